"""``detect_regress``: the detect-then-regress multi-face baseline (entry point ``detect_regress``).

What a single-image method does with a photo of several people, and the baseline WM3DR's
single-shot multi-face network is compared against (accuracy, and time per image as a function
of the face count: benchmarks/multiface.py):

1. **Detect** every face: the project's detector (BlazeFace boxes + the converted face-api
   68-point net per box; MTCNN's 5 points without those weights), through the landmark
   source's ``DetectedLandmarks.detect_all`` (evaluation/landmarks.py), so the board's
   landmark detector and this method's are the same;
2. **Crop**: a square of ``crop_scale`` x the landmark box's larger side about its centre,
   resampled to ``crop_size`` px (``facenets.crop_square``), the landmarks mapped into it;
3. **Regress**: the single-image method ``inner`` (default ``fitting``; any installed
   single-image method that takes ``image`` and ``lm68`` / ``lm5``) on the batch of crops;
4. **Place back**: each face's 2D landmarks mapped to image pixels, its camera the crop camera
   expressed in image pixels (a pinhole crop of side L px at (x0, y0) resampled to S px is the
   same pinhole with focal ``f L / S`` and principal point ``(x0 + L/2, y0 + L/2)``), its
   ``center`` the image of its origin under that camera, its ``score`` the detector's.

The method reads only the image (``inputs = ("image",)``): the detection is part of it.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from benchmark3dface.data.sample import Sample
from benchmark3dface.facemodel import lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod
from benchmark3dface.methods.reconstruction import FaceReconstruction


def _ids(batch: Sample) -> list[str]:
    return list(batch.sample_id) if isinstance(batch.sample_id, list) else [batch.sample_id]


def crop_boxes(points: Tensor, scale: float) -> Tensor:
    """(F, K, 2) landmarks px -> (F, 4) square boxes (x0, y0, x1, y1) of side ``scale`` x the
    larger side of each landmark box, about its centre."""
    lo, hi = points.amin(1), points.amax(1)
    c = (lo + hi) / 2
    half = (hi - lo).amax(-1, keepdim=True) * (scale / 2)
    return torch.cat([c - half, c + half], -1)


def place_back(face: FaceReconstruction, box: Tensor, crop_size: int, score: float | None) -> FaceReconstruction:
    """A face reconstructed in a crop ``box`` (x0, y0, x1, y1 px, square) resampled to
    ``crop_size`` px, expressed in the whole image's pixels (see the module docstring)."""
    x0, y0, x1, _ = (float(v) for v in box)
    k = (x1 - x0) / crop_size  # image px per crop px
    cam = dict(face.camera or {})
    if face.landmarks2d is not None:
        lm = face.landmarks2d * k
        face.landmarks2d = lm + torch.tensor([x0, y0], dtype=lm.dtype)
    if cam.get("kind") == "perspective":
        cx, cy = cam.get("principal", (crop_size / 2, crop_size / 2))
        img_cam = PerspectiveCamera(float(cam["focal"]) * k, x0 + float(cx) * k, y0 + float(cy) * k,
                                    float(cam.get("distance", 1000.0)))
        face.camera = {"kind": "perspective", "focal": img_cam.focal, "principal": (img_cam.cx, img_cam.cy),
                       "distance": img_cam.distance}
        t = torch.zeros(3) if face.translation is None else face.translation.detach().float().cpu()
        face.center = img_cam.project(t.reshape(1, 3))[0, :2]
    else:
        face.center = torch.tensor([(x0 + x1) / 2, (box[1] + box[3]).item() / 2])
    face.score = score
    return face


class DetectRegress(ReconstructionMethod):
    """Detector -> square crops -> a single-image method -> faces in image coordinates.

    Args:
        inner: name of the installed single-image method run on the crops (``fitting``).
        inner_args: its init arguments (e.g. ``{"photo_iters": 0}``).
        crop_size: side of the crops (px) the inner method sees.
        crop_scale: crop side / larger side of the 68-landmark box.
        device: where the detector runs.
    """

    spec = MethodSpec(name="detect_regress", input_kind="multiface", requires=(), inputs=("image",),
                      trainable=False, outputs=("mesh", "landmarks2d", "albedo"),
                      description="detect every face, crop, run a single-image method (fitting) per crop",
                      paper="baseline (detect-then-regress)")

    def __init__(self, facemodel: str = "procedural", facemodel_path: str | None = None, image_size: int = 128,
                 inner: str = "fitting", inner_args: dict[str, Any] | None = None, crop_size: int = 128,
                 crop_scale: float = 1.6, device: str = "cpu") -> None:
        from benchmark3dface.methods.registry import get_method

        super().__init__(facemodel, facemodel_path, image_size)
        cls = get_method(inner)
        if cls.spec.input_kind != "single":
            raise ValueError(f"detect_regress: the inner method {inner!r} must be a single-image method, "
                             f"it takes {cls.spec.input_kind!r} samples")
        self.inner_name = inner
        self.inner = cls(facemodel=facemodel, facemodel_path=facemodel_path, image_size=crop_size,
                         **dict(inner_args or {}))
        self.crop_size = int(crop_size)
        self.crop_scale = float(crop_scale)
        self._detector = None
        self._device = device
        #: seconds of the last ``reconstruct`` call: detection, regression (whole batch)
        self.last_timing: dict[str, float] = {}

    @property
    def detector(self):
        if self._detector is None:
            from benchmark3dface.evaluation.landmarks import DetectedLandmarks

            self._detector = DetectedLandmarks(device=self._device)
        return self._detector

    def reconstruct(self, batch: Sample) -> list[Reconstruction]:
        from benchmark3dface.facenets.landmarks import crop_square

        if batch.image is None:
            raise ValueError("detect_regress needs the batch's images")
        ids = _ids(batch)
        images = batch.image.reshape(-1, *batch.image.shape[-3:]).float()
        t0 = time.perf_counter()
        found = self.detector.detect_all(images)
        t1 = time.perf_counter()
        crops, lm68s, lm5s, owners, boxes, scores = [], [], [], [], [], []
        for i in range(len(ids)):
            pts = found["lm68"][i] if found["lm68"] is not None else found["lm5"][i]
            for j in range(len(pts)):
                box = crop_boxes(pts[j:j + 1], self.crop_scale)[0]
                crops.append(crop_square(images[i].cpu(), box, self.crop_size))
                k = self.crop_size / float(box[2] - box[0])
                to_crop = lambda p: (p - box[:2]) * k  # noqa: E731
                if found["lm68"] is not None:
                    lm68s.append(to_crop(found["lm68"][i][j]))
                lm5s.append(to_crop(found["lm5"][i][j]))
                owners.append(i)
                boxes.append(box)
                scores.append(float(found["scores"][i][j]))
        faces: list[FaceReconstruction] = []
        if crops:
            view = Sample(kind="single", sample_id=[f"{ids[o]}#crop{n}" for n, o in enumerate(owners)],
                          image=torch.stack(crops), lm68=torch.stack(lm68s) if lm68s else None,
                          lm5=torch.stack(lm5s) if lm5s else lm68_to_lm5(torch.stack(lm68s)))
            with torch.no_grad():
                recs = self.inner.reconstruct(view)
            faces = [place_back(r.face, boxes[n], self.crop_size, scores[n]) for n, r in enumerate(recs)]
        t2 = time.perf_counter()
        self.last_timing = {"detect_seconds": t1 - t0, "regress_seconds": t2 - t1, "faces": float(len(faces))}
        out = [Reconstruction(sid, [], extras={"inner": self.inner_name}) for sid in ids]
        for n, face in enumerate(faces):
            out[owners[n]].faces.append(face)
        return out


__all__ = ["DetectRegress", "crop_boxes", "place_back"]
