"""Baselines on every board: the mean face and the oracle (GT coefficients).

- ``meanface``: zero identity/expression; the pose is fitted to the sample's 2D landmarks (68
  when present, else the 5 alignment points), so landmark protocols measure the mean shape.
- ``oracle``: the ground-truth coefficients of a synthetic sample, decoded by the same model.
  It shows each protocol's floor (what a perfect 3DMM estimate scores).
"""

from __future__ import annotations


from benchmark3dface.data.sample import Sample
from benchmark3dface.facemodel import lm68_to_lm5
from benchmark3dface.geometry.pose import fit_pose_to_landmarks
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod


def _ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


class MeanFace(ReconstructionMethod):
    spec = MethodSpec(name="meanface", input_kind="single", requires=(), trainable=False,
                      description="mean face, pose fitted to the 2D landmarks (lower bound to beat)",
                      paper="baseline")

    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        fm = self.facemodel
        ids = _ids(batch)
        n = len(ids)
        mean_lm = fm.mean_shape[fm.landmarks68].expand(n, 68, 3)
        if batch.lm68 is not None:
            pts3, pts2 = mean_lm, batch.lm68.to(mean_lm)
            w = batch.lm68_visible.to(mean_lm) if batch.lm68_visible is not None else None
        elif batch.lm5 is not None:
            pts3, pts2, w = lm68_to_lm5(mean_lm), batch.lm5.to(mean_lm), None
        else:
            raise ValueError("meanface needs 2D landmarks (lm68 or lm5) in the sample to place the face")
        cam = self.camera_for(batch)
        angles, trans, _ = fit_pose_to_landmarks(pts3, pts2, cam, weights=w)
        coeffs = fm.layout.zeros(n, device=angles.device)
        coeffs[:, fm.layout.slice("angles")] = angles
        coeffs[:, fm.layout.slice("trans")] = trans
        faces = self.faces_from_coeffs(coeffs, cam)
        return [Reconstruction(sid, [f]) for sid, f in zip(ids, faces)]


class Oracle(ReconstructionMethod):
    spec = MethodSpec(name="oracle", input_kind="single", requires=("coeffs",), trainable=False,
                      description="ground-truth coefficients (each protocol's floor; synthetic data only)",
                      paper="baseline")

    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        if batch.coeffs is None:
            raise ValueError("oracle needs ground-truth coefficients (synthetic data)")
        coeffs = batch.coeffs.to(self.facemodel.mean_shape)
        if coeffs.shape[-1] != self.facemodel.layout.size:
            raise ValueError(f"oracle: GT coefficients have {coeffs.shape[-1]} values, the model layout needs "
                             f"{self.facemodel.layout.size}: the data was generated with another face model")
        faces = self.faces_from_coeffs(coeffs, self.camera_for(batch))
        return [Reconstruction(sid, [f]) for sid, f in zip(_ids(batch), faces)]


__all__ = ["MeanFace", "Oracle"]
