"""The base class every method plugin subclasses."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor

from ..data.sample import Sample
from ..facemodel import MorphableModel, load_facemodel
from ..geometry.camera import PerspectiveCamera
from .reconstruction import FaceReconstruction, Reconstruction
from .spec import MethodSpec


class ReconstructionMethod(L.LightningModule):
    """A 3D face reconstruction method: a LightningModule plus a ``spec`` declaration.

    Subclasses implement ``reconstruct(batch) -> list[Reconstruction]`` (one per sample, the
    contract in reconstruction.py) and, when trainable, ``training_step``. Evaluation is
    generic: the benchmark runner attaches protocols (torchmetrics Metrics whose ``update``
    takes ``(reconstructions, batch)``) with ``attach_protocols``, and ``test_step`` feeds them.

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
        self.protocols: dict[str, Any] = {}
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

    def faces_from_coeffs(self, coeffs: Tensor, camera: PerspectiveCamera | None = None) -> list[FaceReconstruction]:
        """Decode (B, layout.size) coefficients to one FaceReconstruction per row."""
        cam = camera or self.camera
        with torch.no_grad():
            geo = self.facemodel.decode(coeffs.float(), cam)
        tri = self.facemodel.triangles.cpu()
        lmi = self.facemodel.landmarks68.cpu()
        camd = {"kind": "perspective", "focal": cam.focal, "principal": (cam.cx, cam.cy), "distance": cam.distance}
        out = []
        for b in range(coeffs.shape[0]):
            out.append(FaceReconstruction(
                vertices=geo.vertices[b].detach().cpu(), triangles=tri, landmark_indices=lmi,
                landmarks2d=geo.landmarks2d[b].detach().cpu(), rotation=geo.rotation[b].detach().cpu(),
                translation=geo.translation[b].detach().cpu(), camera=camd, albedo=geo.albedo[b].detach().cpu()))
        return out

    # ------------------------------------------------------------------ lightning plumbing
    def attach_protocols(self, protocols: dict[str, Any]) -> None:
        """Protocols to update in ``test_step`` (kept outside the module tree: no state_dict)."""
        self.protocols = dict(protocols)

    def predict_step(self, batch: Sample, batch_idx: int, dataloader_idx: int = 0) -> list[Reconstruction]:
        return self.reconstruct(batch)

    def test_step(self, batch: Sample, batch_idx: int) -> None:
        recs = self.reconstruct(batch)
        for proto in self.protocols.values():
            proto.update(recs, batch)

    def on_test_epoch_end(self) -> None:
        self.test_results = {name: proto.compute() for name, proto in self.protocols.items()}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, Sample):
            for name, value in vars(batch).items():
                if isinstance(value, torch.Tensor):
                    setattr(batch, name, value.to(device))
                elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                    setattr(batch, name, [v.to(device) if isinstance(v, torch.Tensor) else v for v in value])
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)
