"""Baselines on every board: the mean face and the oracle (GT coefficients), for every input kind.

- ``meanface``: zero identity/expression; the pose is fitted to the test-time 2D landmarks (68
  when the landmark source gives them, else the 5 alignment points), so landmark protocols
  measure the mean shape. Its landmarks come from the run's landmark source (a detector by
  default; benchmark3dface.evaluation.landmarks), never from the annotations.
- ``oracle``: the ground-truth coefficients of a synthetic sample, decoded by the same model
  with the sample's camera. It shows each protocol's floor (what a perfect 3DMM estimate
  scores); its input is ground truth by definition (``gt:coeffs``, plus the ``camera``) and the
  board says so.

Both are evaluated on every test set of the profile (``eval_kinds = ("*",)``):

- single images: one face; under weak perspective (``meta["projection"] ==
  "weak_perspective"``, the ``single_weak`` depth board) the mean face is placed by a
  scaled-orthographic fit (:func:`fit_weak_pose`) and every face carries its weak camera
  (``scale`` px/mm, ``translation2d`` px) so the depth protocol can render it;
- sets / multi-view samples: one face per view (``per_view``, each posed on its own view's
  landmarks) and the aggregated ``faces[0]``: the mean face (meanface), the set's identity with a
  neutral expression (oracle on sets, Deng's Table 4 GT) or the front view's face (oracle on
  multi-view triplets, whose views share identity and expression);
- multi-face images: one face per detected face (meanface: per face of the landmark source,
  which returns every face; oracle: per GT face), each with ``center`` (the image of its
  origin, what the protocols match faces by) and a ``score``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.facemodel import lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera, WeakPerspectiveCamera, camera_kind, perspective_from_dict
from benchmark3dface.geometry.pose import fit_pose_to_landmarks
from benchmark3dface.geometry.rotation import matrix_to_euler
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod
from benchmark3dface.methods.reconstruction import FaceReconstruction

#: every test set of the profile (single, set, multiview, multiface, single_weak, ...)
ALL_BOARDS = ("*",)


def _ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


def _kind(batch: Sample) -> str:
    k = batch.kind
    return k if isinstance(k, str) else (k[0] if k else "single")


def _metas(batch: Sample, n: int) -> list[dict]:
    m = batch.meta
    return list(m) if isinstance(m, list) else [dict(m or {})] * n


def is_weak(batch: Sample, n: int) -> bool:
    """Whether the batch's images are weak-perspective renders (``meta["projection"]``)."""
    return any(str(m.get("projection", "")).startswith("weak") for m in _metas(batch, n))


def front_view(kind: str, views: int) -> int:
    """The view the aggregated face of a set / multi-view sample is taken from: the middle
    (front) view of a (left, front, right) triplet, the first image of a set."""
    return views // 2 if kind == "multiview" else 0


def fit_weak_pose(points3d: Tensor, points2d: Tensor, principal: tuple[float, float],
                  weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Scaled-orthographic pose from 2D-3D correspondences (weak perspective, closed form).

    Model (``WeakPerspectiveCamera``): ``u = cx + s (R X)_x + tx``, ``v = cy - (s (R X)_y + ty)``.
    The weighted least-squares affine map (2 x 3) from the centred 3D points to the centred
    image points (y up) is projected to the nearest scaled orthonormal pair of rows (SVD:
    ``s`` = mean singular value), completed to a rotation by the cross product.

    Args:
        points3d: (B, K, 3) model-frame points (mm); points2d: (B, K, 2) image pixels.
        principal: (cx, cy) px; weights: optional (B, K) point weights (0: ignored).
    Returns:
        rotation (B, 3, 3), scale (B,) px/mm, translation2d (B, 2) px.
    """
    x3 = points3d.to(torch.float64)
    p = points2d.to(torch.float64)
    y = torch.stack([p[..., 0] - principal[0], principal[1] - p[..., 1]], -1)  # y up
    w = torch.ones(x3.shape[:2], dtype=torch.float64) if weights is None else weights.to(torch.float64)
    w = w * torch.isfinite(y).all(-1)
    y = torch.nan_to_num(y)
    ws = w.sum(1, keepdim=True).clamp_min(1e-9)
    mx = (w[..., None] * x3).sum(1, keepdim=True) / ws[..., None]
    my = (w[..., None] * y).sum(1, keepdim=True) / ws[..., None]
    xc, yc = x3 - mx, y - my
    xtx = (xc * w[..., None]).transpose(1, 2) @ xc  # (B, 3, 3)
    ytx = (yc * w[..., None]).transpose(1, 2) @ xc  # (B, 2, 3)
    a = ytx @ torch.linalg.inv(xtx + 1e-9 * torch.eye(3, dtype=torch.float64))
    u, sv, vt = torch.linalg.svd(a, full_matrices=False)  # (B,2,2), (B,2), (B,2,3)
    rows = u @ vt
    r3 = torch.linalg.cross(rows[:, 0], rows[:, 1])
    rot = torch.cat([rows, r3[:, None]], 1)
    scale = sv.mean(-1)
    t = my[:, 0] - scale[:, None] * (rot[:, :2] @ mx[:, 0, :, None])[..., 0]
    return rot.float(), scale.float(), t.float()


def _landmark_target(lm68: Tensor | None, lm5: Tensor | None, fm, n: int) -> tuple[Tensor, Tensor]:
    """(3D model points, 2D targets) of ``n`` faces: the 68 landmarks, else the 5 points."""
    mean_lm = fm.mean_shape[fm.landmarks68].expand(n, 68, 3)
    if lm68 is not None:
        return mean_lm, lm68.reshape(n, 68, 2).to(mean_lm)
    if lm5 is not None:
        return lm68_to_lm5(mean_lm), lm5.reshape(n, 5, 2).to(mean_lm)
    raise ValueError("meanface needs 2D landmarks (lm68 or lm5) in the sample to place the face")


class MeanFace(ReconstructionMethod):
    spec = MethodSpec(name="meanface", input_kind="single", requires=(), inputs=("image", "lm68", "lm5"),
                      trainable=False, eval_kinds=ALL_BOARDS,
                      description="mean face, pose fitted to the 2D landmarks (lower bound to beat)",
                      paper="baseline")

    def place(self, lm68: Tensor | None, lm5: Tensor | None, size: int, weak: bool = False,
              with_center: bool = False, weights: Tensor | None = None) -> list[FaceReconstruction]:
        """Mean faces placed on ``n`` landmark sets ((n, 68, 2) or (n, 5, 2) px) in a square
        image of ``size`` px: Deng's camera rescaled to the size, or weak perspective;
        ``weights``: optional (n, 68) visibility weights of the 68 points."""
        fm = self.facemodel
        ref = lm68 if lm68 is not None else lm5
        n = 0 if ref is None else int(ref.reshape(-1, ref.shape[-2], 2).shape[0])
        if n == 0:
            if ref is None:
                raise ValueError("meanface needs 2D landmarks (lm68 or lm5) in the sample to place the face")
            return []
        pts3, pts2 = _landmark_target(lm68, lm5, fm, n)
        w = None if weights is None or lm68 is None else weights.reshape(n, 68).to(pts3)
        coeffs = fm.layout.zeros(n, device=pts3.device)
        if weak:
            cam = WeakPerspectiveCamera(size, size)
            rot, scale, t2 = fit_weak_pose(pts3, pts2, (cam.cx, cam.cy), weights=w)
            coeffs[:, fm.layout.slice("angles")] = matrix_to_euler(rot).to(coeffs)
            return self.faces_from_coeffs(coeffs, cam, scale=scale, translation2d=t2, with_center=with_center)
        cam = PerspectiveCamera.deng(int(size))
        angles, trans, _ = fit_pose_to_landmarks(pts3, pts2, cam, weights=w)
        coeffs[:, fm.layout.slice("angles")] = angles
        coeffs[:, fm.layout.slice("trans")] = trans
        return self.faces_from_coeffs(coeffs, cam, with_center=with_center)

    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        ids = _ids(batch)
        n = len(ids)
        kind = _kind(batch)
        size = int(batch.image.shape[-1]) if batch.image is not None else self.image_size
        if kind == "multiface":
            l68 = batch.lm68 if batch.lm68 is not None else [None] * n
            l5 = batch.lm5 if batch.lm5 is not None else [None] * n
            out = []
            for i, sid in enumerate(ids):
                faces = self.place(l68[i], l5[i], size, with_center=True)
                out.append(Reconstruction(sid, faces))
            return out
        weak = is_weak(batch, n)
        if kind in ("set", "multiview"):
            ref = batch.lm68 if batch.lm68 is not None else batch.lm5
            views = int(ref.shape[1]) if ref is not None else 1
            lm68 = None if batch.lm68 is None else batch.lm68.reshape(n * views, 68, 2)
            lm5 = None if batch.lm5 is None else batch.lm5.reshape(n * views, 5, 2)
            faces = self.place(lm68, lm5, size, weak)
            front = front_view(kind, views)
            return [Reconstruction(sid, [faces[i * views + front]], per_view=faces[i * views:(i + 1) * views])
                    for i, sid in enumerate(ids)]
        vis = batch.lm68_visible if "lm68_visible" in batch.present() else None
        faces = self.place(batch.lm68, batch.lm5, size, weak, weights=vis)
        return [Reconstruction(sid, [f]) for sid, f in zip(ids, faces)]


def _camera_dicts(batch: Sample, n: int) -> list[dict]:
    cam = batch.camera
    return [dict(c or {}) for c in cam] if isinstance(cam, list) else [dict(cam or {})] * n


class Oracle(ReconstructionMethod):
    spec = MethodSpec(name="oracle", input_kind="single", requires=("coeffs",), inputs=("image", "gt:coeffs", "camera"),
                      trainable=False, eval_kinds=ALL_BOARDS,
                      description="ground-truth coefficients and camera (each protocol's floor; synthetic data only)",
                      paper="baseline")

    def decode_gt(self, coeffs: Tensor, camera: dict, size: int, view: int = 0,
                  with_center: bool = False) -> list[FaceReconstruction]:
        """Faces of GT coefficients (F, C) with the sample's camera dictionary (perspective, or
        weak perspective with the engine's per-view ``scale`` / ``translation`` lists)."""
        coeffs = coeffs.reshape(-1, coeffs.shape[-1]).to(self.facemodel.mean_shape)
        if coeffs.shape[-1] != self.facemodel.layout.size:
            raise ValueError(f"oracle: GT coefficients have {coeffs.shape[-1]} values, the model layout needs "
                             f"{self.facemodel.layout.size}: the data was generated with another face model")
        w = int(camera.get("width", size))
        h = int(camera.get("height", size))
        if camera_kind(camera) == "weak":
            scale = torch.as_tensor(camera["scale"], dtype=torch.float32).reshape(-1)
            t2 = torch.as_tensor(camera.get("translation", [[0.0, 0.0]]), dtype=torch.float32).reshape(-1, 2)
            k = view if len(scale) > 1 else 0
            return self.faces_from_coeffs(coeffs, WeakPerspectiveCamera(w, h), scale=scale[k:k + 1],
                                          translation2d=t2[min(k, len(t2) - 1)][None], with_center=with_center)
        cam = perspective_from_dict(camera, w, h) if camera.get("focal") is not None else PerspectiveCamera.deng(size)
        return self.faces_from_coeffs(coeffs, cam, with_center=with_center)

    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        if batch.coeffs is None:
            raise ValueError("oracle needs ground-truth coefficients (synthetic data)")
        ids = _ids(batch)
        n = len(ids)
        kind = _kind(batch)
        size = int(batch.image.shape[-1]) if batch.image is not None else self.image_size
        cams = _camera_dicts(batch, n)
        coeffs = batch.coeffs
        out = []
        for i, sid in enumerate(ids):
            c = coeffs[i] if isinstance(coeffs, list) or coeffs.ndim > 1 else coeffs
            if kind == "multiface":
                faces = self.decode_gt(c, cams[i], size, with_center=True)
                for f in faces:
                    f.score = 1.0
                out.append(Reconstruction(sid, faces))
            elif kind in ("set", "multiview"):
                c = c.reshape(-1, c.shape[-1])
                per_view = [self.decode_gt(c[v], cams[i], size, view=v)[0] for v in range(len(c))]
                front = front_view(kind, len(c))
                if kind == "set":  # the set's identity with a neutral expression (Deng's Table 4 GT)
                    lay = self.facemodel.layout
                    neutral = c[front].clone()
                    neutral[lay.slice("exp")] = 0
                    agg = self.decode_gt(neutral, cams[i], size, view=front)[0]
                else:
                    agg = per_view[front]
                out.append(Reconstruction(sid, [agg], per_view=per_view))
            else:
                out.append(Reconstruction(sid, self.decode_gt(c, cams[i], size)))
        return out


__all__ = ["ALL_BOARDS", "MeanFace", "Oracle", "fit_weak_pose", "front_view", "is_weak"]
