"""The base class every method plugin subclasses."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor

from ..data.sample import Sample
from ..facemodel import MorphableModel, load_facemodel
from ..geometry.camera import PerspectiveCamera, WeakPerspectiveCamera
from .reconstruction import FaceReconstruction, Reconstruction
from .spec import MethodSpec


class ReconstructionMethod(L.LightningModule):
    """A 3D face reconstruction method: a LightningModule plus a ``spec`` declaration.

    Subclasses implement ``reconstruct(batch) -> list[Reconstruction]`` (one per sample, the
    contract in reconstruction.py) and, when trainable, ``training_step``. Evaluation is
    generic (benchmark3dface.evaluation): ``reconstruct`` receives an input-only view of each
    batch (the fields ``spec.inputs`` declares; ground truth is hidden), and ``test_step`` scores
    through the same ``evaluate_batch`` the benchmark runner and ``b3f evaluate`` use.

    Args:
        facemodel: morphable model source ("procedural", "bfm", "ict").
        facemodel_path: file/folder for sources that need one.
        image_size: the square input size the method works at.
    """

    spec: ClassVar[MethodSpec]

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None,
                 image_size: int = 224):
        super().__init__()
        self.facemodel: MorphableModel = load_facemodel(facemodel, facemodel_path)
        self.image_size = image_size
        self.test_results: dict[str, Any] = {}

    # ------------------------------------------------------------------ contract
    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        raise NotImplementedError(f"{type(self).__name__} must implement reconstruct(batch)")

    @property
    def camera(self) -> PerspectiveCamera:
        """Deng's camera at the method's own input size."""
        return PerspectiveCamera.deng(self.image_size)

    def camera_for(self, batch: Sample) -> PerspectiveCamera:
        """Deng's camera rescaled to the batch's image size (methods accept any square size)."""
        size = batch.image.shape[-1] if batch.image is not None else self.image_size
        return PerspectiveCamera.deng(int(size))

    # ------------------------------------------------------------------ helpers
    def network_input(self, images: Tensor) -> Tensor:
        """Images (..., 3, H, W) resized (bilinear, antialiased) to the method's square
        ``image_size``, so a network trained at one size accepts test images of any size. With
        Deng's camera rescaled to the batch size (``camera_for``) the coefficients mean the same
        at every size, so faces are decoded with the *batch's* camera."""
        size = int(self.image_size)
        if images.shape[-2:] == (size, size):
            return images
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        out = torch.nn.functional.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False,
                                              antialias=True)
        return out.reshape(*lead, *out.shape[-3:])

    def faces_from_coeffs(self, coeffs: Tensor, camera: PerspectiveCamera | WeakPerspectiveCamera | None = None,
                          scale: Tensor | None = None, translation2d: Tensor | None = None,
                          with_center: bool = False) -> list[FaceReconstruction]:
        """Decode (B, layout.size) coefficients to one FaceReconstruction per row, with the camera
        that places it in the image (``face.camera``, what the depth protocol renders with).

        - :class:`PerspectiveCamera` (default: Deng's at ``image_size``): ``camera`` =
          ``{"kind": "perspective", "focal", "principal", "distance"}``; the pose is the layout's
          angles and translation (mm);
        - :class:`WeakPerspectiveCamera`: needs ``scale`` (B,) px/mm and ``translation2d``
          (B, 2) px (default 0); ``camera`` = ``{"kind": "weak", "scale", "translation2d",
          "principal"}`` per face, the translation is zero (``MorphableModel.decode``).

        ``with_center``: set ``face.center`` to the image of the face origin (px), the centre
        multi-face protocols match faces by (``Sample.centers``)."""
        cam = camera or self.camera
        weak = isinstance(cam, WeakPerspectiveCamera)
        with torch.no_grad():
            if weak:
                if scale is None:
                    raise ValueError("weak-perspective faces need scale (B,) px/mm")
                geo = self.facemodel.decode(coeffs.float(), cam, scale=scale, translation2d=translation2d)
            else:
                geo = self.facemodel.decode(coeffs.float(), cam)
        tri = self.facemodel.triangles.cpu()
        lmi = self.facemodel.landmarks68.cpu()
        n = coeffs.shape[0]
        if weak:
            s = torch.as_tensor(scale, dtype=torch.float32).reshape(-1).expand(n).cpu()
            t2 = (torch.zeros(n, 2) if translation2d is None
                  else torch.as_tensor(translation2d, dtype=torch.float32).reshape(-1, 2).expand(n, 2).cpu())
        out = []
        for b in range(n):
            if weak:
                camd = {"kind": "weak", "scale": float(s[b]), "translation2d": (float(t2[b, 0]), float(t2[b, 1])),
                        "principal": (cam.cx, cam.cy)}
                origin = torch.tensor([cam.cx + float(t2[b, 0]), cam.cy - float(t2[b, 1])])
            else:
                camd = {"kind": "perspective", "focal": cam.focal, "principal": (cam.cx, cam.cy),
                        "distance": cam.distance}
                origin = cam.project(geo.translation[b].detach().reshape(1, 3).to(torch.float32).cpu())[0, :2]
            out.append(FaceReconstruction(
                vertices=geo.vertices[b].detach().cpu(), triangles=tri, landmark_indices=lmi,
                landmarks2d=geo.landmarks2d[b].detach().cpu(), rotation=geo.rotation[b].detach().cpu(),
                translation=geo.translation[b].detach().cpu(), camera=camd, albedo=geo.albedo[b].detach().cpu(),
                center=origin if with_center else None))
        return out

    # ------------------------------------------------------------------ lightning plumbing
    def attach_evaluation(self, plan: Any) -> None:
        """The evaluation plan ``test_step`` scores with (benchmark3dface.evaluation.loop):
        protocols, landmark source, targets. Kept outside the module tree (no state dict)."""
        object.__setattr__(self, "_evaluation", plan)
        object.__setattr__(self, "_eval_metrics", None)

    def predict_step(self, batch: Sample, batch_idx: int, dataloader_idx: int = 0) -> list[Reconstruction]:
        """Deployment (``b3f predict`` on user data): the batch is the input as given."""
        return self.reconstruct(batch)

    def on_test_start(self) -> None:
        """``b3f test`` without an attached plan scores with the data module's default protocols
        (benchmark3dface.evaluation.loop.default_plan)."""
        if getattr(self, "_evaluation", None) is None:
            from ..evaluation.loop import default_plan

            dm = getattr(self.trainer, "datamodule", None)
            self.attach_evaluation(default_plan(self.spec, dm))

    def test_step(self, batch: Sample, batch_idx: int) -> None:
        """Scores the batch through the one evaluation path (``evaluate_batch``) with the attached
        plan (``attach_evaluation``; ``b3f evaluate`` and the benchmark runner attach theirs)."""
        from ..evaluation.loop import evaluate_batch

        plan = getattr(self, "_evaluation", None)
        if plan is None:
            raise RuntimeError(f"{type(self).__name__}.test_step: no evaluation attached; use `b3f evaluate` "
                               "or call attach_evaluation(EvaluationPlan(...)) first")
        if getattr(self, "_eval_metrics", None) is None:
            object.__setattr__(self, "_eval_metrics", {k: m.to(self.device) for k, m in plan.build_metrics().items()})
        with torch.no_grad():
            evaluate_batch(self.reconstruct, batch, plan, self._eval_metrics)

    def on_test_epoch_end(self) -> None:
        metrics = getattr(self, "_eval_metrics", None) or {}
        self.test_results = {name: m.compute() for name, m in metrics.items()}
        object.__setattr__(self, "_eval_metrics", None)
        flat = {f"test/{p}/{k}": float(v.value) for p, r in self.test_results.items() for k, v in r.metrics.items()}
        flat.update({f"test/{p}/n_failed": float(r.n_failed) for p, r in self.test_results.items()})
        if flat and self._trainer is not None:
            self.log_dict(flat, sync_dist=False, rank_zero_only=True)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, Sample):
            for name, value in vars(batch).items():
                if isinstance(value, torch.Tensor):
                    setattr(batch, name, value.to(device))
                elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                    setattr(batch, name, [v.to(device) if isinstance(v, torch.Tensor) else v for v in value])
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)
