"""Where test-time landmarks come from: the run's *landmark source*.

A method that declares ``lm68`` / ``lm5`` inputs never receives the dataset's annotated
landmarks at test time. It receives the output of one of these sources, chosen per profile
(``landmarks:`` in experiments/<profile>/benchmark.yaml) or per ``b3f evaluate --landmarks``:

``detector`` (default)
    The project's detectors run on the image: BlazeFace boxes + the converted face-api
    68-point network (benchmark3dface.facenets, weights from ``b3f weights fetch``), 5 points
    derived from the 68. Without those weights, MTCNN's 5 points (facenet-pytorch ships its
    weights) and no 68. A face the detector misses gets NaN landmarks, and the method's
    reconstruction of it counts as a failure.
``gt``
    The annotated landmarks. Allowed only as an explicitly named *oracle-input* variant: its
    leaderboard rows carry the suffix ``[gt-landmarks]``.
``gt_noise``
    The annotated landmarks plus isotropic Gaussian noise of ``sigma`` times the face size
    (sqrt of the landmark box area), drawn from a generator seeded by the sample id (the same
    noise for every method). Default ``sigma = 0.04``, about the per-coordinate spread that gives
    the 5.3-5.4 % NME measured for the face-api detector on the AFLW2000-3D sample
    (NME ~ sigma * sqrt(pi / 2) * sqrt(2)). Rows carry ``[gt-noise-landmarks]``.

Every source returns ``{"lm68": (B, ..., 68, 2) | None, "lm5": (B, ..., 5, 2) | None, "ok": (B, ...)}``
for a collated batch (image fields ``(B, 3, H, W)`` or ``(B, V, 3, H, W)``).

Multi-face images (``batch.kind == "multiface"``): *every* face, as per-image lists --
``lm68`` / ``lm5``: ``[(F_i, 68 | 5, 2)]`` (``F_i`` faces found in image i, possibly 0), ``ok``:
(B,) whether image i has at least one face; the detector adds ``boxes`` ``[(F_i, 4)]`` (x0, y0,
x1, y1 px), their ``centers`` ``[(F_i, 2)]`` px and ``scores`` ``[(F_i,)]``, by decreasing score. Sets / multi-view samples get one
face per view, as single images do.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from torch import Tensor

from ..data.sample import Sample
from ..facemodel.model import lm68_to_lm5

SOURCES = ("detector", "gt", "gt_noise")
#: leaderboard name suffix of the non-default sources (oracle-input rows)
ROW_SUFFIX = {"detector": "", "gt": "[gt-landmarks]", "gt_noise": "[gt-noise-landmarks]"}


class LandmarkSource:
    name = "base"

    def describe(self) -> dict[str, Any]:
        """What the leaderboard records as this run's landmark input."""
        return {"source": self.name}

    def __call__(self, batch: Sample) -> dict[str, Tensor | None]:
        raise NotImplementedError


class GroundTruthLandmarks(LandmarkSource):
    """The annotations themselves (oracle input)."""

    name = "gt"

    def __call__(self, batch: Sample) -> dict[str, Tensor | None]:
        lm68, lm5 = batch.lm68, batch.lm5
        if _is_multiface(batch):
            return _multiface_gt(lm68, lm5)
        if lm5 is None and lm68 is not None:
            lm5 = lm68_to_lm5(lm68.float())
        ref = lm68 if lm68 is not None else lm5
        if ref is None:  # nothing annotated: every sample fails (counted), none is guessed
            n = len(batch.sample_id) if isinstance(batch.sample_id, list) else 1
            return {"lm68": None, "lm5": None, "ok": torch.zeros(n, dtype=torch.bool)}
        ok = torch.isfinite(ref).flatten(-2).all(-1)
        return {"lm68": lm68, "lm5": lm5, "ok": ok}


def _is_multiface(batch: Sample) -> bool:
    kind = batch.kind
    return (kind == "multiface") if isinstance(kind, str) else bool(kind) and all(k == "multiface" for k in kind)


def _per_image(x: Any) -> list[Tensor] | None:
    """A multi-face field as a list of per-image tensors (a collated (B, F, ...) tensor split)."""
    if x is None:
        return None
    return [t for t in x] if isinstance(x, Tensor) else list(x)


def _multiface_gt(lm68: Any, lm5: Any) -> dict[str, Any]:
    """Annotated faces of multi-face images as per-image lists (see the module docstring)."""
    l68, l5 = _per_image(lm68), _per_image(lm5)
    if l5 is None and l68 is not None:
        l5 = [lm68_to_lm5(t.float()) for t in l68]
    ref = l68 if l68 is not None else l5
    if ref is None:
        return {"lm68": None, "lm5": None, "ok": torch.zeros(0, dtype=torch.bool)}
    ok = torch.tensor([bool(torch.isfinite(t).all(-1).all(-1).any()) if t.numel() else False for t in ref])
    return {"lm68": l68, "lm5": l5, "ok": ok}


def _seed(sample_id: str, salt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{sample_id}".encode()).digest()[:8], "little") & (2**63 - 1)


def face_size(lm: Tensor) -> Tensor:
    """sqrt(w * h) of each landmark set's bounding box: (..., K, 2) -> (...)."""
    wh = lm.amax(-2) - lm.amin(-2)
    return (wh[..., 0].clamp_min(0) * wh[..., 1].clamp_min(0)).sqrt()


class NoisyGroundTruthLandmarks(GroundTruthLandmarks):
    """Annotations + seeded Gaussian noise (see the module docstring)."""

    name = "gt_noise"

    def __init__(self, sigma: float = 0.04, seed: int = 0) -> None:
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"gt_noise: sigma must be a finite number >= 0, got {sigma!r}")
        self.sigma, self.seed = float(sigma), int(seed)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "sigma": self.sigma, "seed": self.seed}

    def __call__(self, batch: Sample) -> dict[str, Tensor | None]:
        out = super().__call__(batch)
        ids = batch.sample_id if isinstance(batch.sample_id, list) else [batch.sample_id]
        lm68 = out["lm68"]
        if lm68 is None and out["lm5"] is None:
            return out
        if lm68 is None:
            base = out["lm5"]
            noisy = self._noise(base, ids)
            return {"lm68": None, "lm5": noisy, "ok": out["ok"]}
        if isinstance(lm68, list):  # multi-face images
            noisy = self._noise([t.float() for t in lm68], ids)
            return {"lm68": noisy, "lm5": [lm68_to_lm5(t) for t in noisy], "ok": out["ok"]}
        noisy68 = self._noise(lm68.float(), ids)
        return {"lm68": noisy68, "lm5": lm68_to_lm5(noisy68), "ok": out["ok"]}

    def _noise(self, lm: Tensor | list[Tensor], ids: list[str]) -> Tensor | list[Tensor]:
        if isinstance(lm, list):  # multi-face images: one tensor (F_i, K, 2) per image
            return [self._noise(t.float()[None], [sid])[0] for t, sid in zip(lm, ids)]
        lm = lm.float()
        single = len(ids) == 1 and lm.shape[0] != 1 and lm.ndim == 2
        if single:
            lm = lm[None]
        out = lm.clone()
        for i, sid in enumerate(ids):
            g = torch.Generator().manual_seed(_seed(str(sid), self.seed))
            noise = torch.randn(lm[i].shape, generator=g, dtype=torch.float32).to(lm.device)
            out[i] = lm[i] + self.sigma * face_size(lm[i])[..., None, None] * noise
        return out[0] if single else out


class DetectedLandmarks(LandmarkSource):
    """Landmarks detected on the image (see the module docstring)."""

    name = "detector"

    def __init__(self, device: str = "cpu", method: str = "faceapi") -> None:
        self.device = device
        self.method = method
        self._lm68 = None
        self._mtcnn = None
        self.backend = self._choose()

    def _choose(self) -> str:
        try:
            from ..facenets.landmarks import Landmarker68  # noqa: F401
            from ..weights import available
        except ImportError:
            return "mtcnn"
        need = ("faceapi_landmark68", "blazeface") if self.method == "faceapi" else ("facemesh", "blazeface")
        return self.method if all(available(n) for n in need) else "mtcnn"

    def describe(self) -> dict[str, Any]:
        detail = {"faceapi": "BlazeFace boxes + face-api 68-point net",
                  "facemesh": "BlazeFace boxes + FaceMesh 468 -> 68",
                  "mtcnn": "MTCNN 5 points (no 68-point detector weights cached)"}[self.backend]
        return {"source": self.name, "backend": self.backend, "detail": detail}

    def __call__(self, batch: Sample) -> dict[str, Tensor | None]:
        img = batch.image
        if img is None:
            raise ValueError("landmark source 'detector' needs the batch's images")
        if _is_multiface(batch):
            return self.detect_all(img)
        lead = img.shape[:-3]
        flat = img.reshape(-1, *img.shape[-3:]).float()
        if self.backend == "mtcnn":
            lm5, ok = self._detect_mtcnn(flat)
            return {"lm68": None, "lm5": lm5.reshape(*lead, 5, 2), "ok": ok.reshape(lead)}
        if self._lm68 is None:
            from ..facenets.landmarks import Landmarker68

            self._lm68 = Landmarker68(device=self.device, method=self.backend)
        with torch.no_grad():
            lm68, ok = self._lm68(flat.to(self.device))
        lm68 = lm68.float().cpu().to(img.device)
        return {"lm68": lm68.reshape(*lead, 68, 2), "lm5": lm68_to_lm5(lm68).reshape(*lead, 5, 2),
                "ok": ok.cpu().reshape(lead)}

    def detect_all(self, images: Tensor) -> dict[str, Any]:
        """Every face of each image ``(B, 3, H, W)`` (multi-face images; see the module docstring)."""
        flat = images.reshape(-1, *images.shape[-3:]).float()
        lm68s: list[Tensor] = []
        lm5s: list[Tensor] = []
        boxes: list[Tensor] = []
        scores: list[Tensor] = []
        if self.backend == "mtcnn":
            from ..data.preprocess.detect import MTCNNDetector

            if self._mtcnn is None:
                self._mtcnn = MTCNNDetector(device=self.device)
            for dets in self._mtcnn.detect_batch([f.cpu() for f in flat]):
                dets = sorted(dets, key=lambda d: -float(d.score))
                lm5s.append(torch.stack([torch.as_tensor(d.lm5, dtype=torch.float32) for d in dets])
                            if dets else torch.zeros(0, 5, 2))
                boxes.append(torch.stack([torch.as_tensor(d.box, dtype=torch.float32)[:4] for d in dets])
                             if dets else torch.zeros(0, 4))
                scores.append(torch.tensor([float(d.score) for d in dets], dtype=torch.float32))
            ok = torch.tensor([len(s) > 0 for s in scores], dtype=torch.bool)
            return {"lm68": None, "lm5": lm5s, "ok": ok, "boxes": boxes, "scores": scores,
                    "centers": [(b[:, :2] + b[:, 2:]) / 2 for b in boxes]}
        if self._lm68 is None:
            from ..facenets.landmarks import Landmarker68

            self._lm68 = Landmarker68(device=self.device, method=self.backend)
        with torch.no_grad():
            found = self._lm68.detector.detect_batch(flat.cpu())
            for i, dets in enumerate(found):
                if not dets:
                    lm68s.append(torch.zeros(0, 68, 2))
                    boxes.append(torch.zeros(0, 4))
                    scores.append(torch.zeros(0))
                    continue
                box = torch.stack([d.box.float() for d in dets])
                lm, ok_i = self._lm68(flat[i:i + 1].expand(len(dets), -1, -1, -1).to(self.device), box)
                keep = ok_i.cpu()
                lm68s.append(lm.float().cpu()[keep])
                boxes.append(box[keep])
                scores.append(torch.tensor([float(d.score) for d in dets], dtype=torch.float32)[keep])
        lm5s = [lm68_to_lm5(t) if len(t) else torch.zeros(0, 5, 2) for t in lm68s]
        ok = torch.tensor([len(t) > 0 for t in lm68s], dtype=torch.bool)
        return {"lm68": lm68s, "lm5": lm5s, "ok": ok, "boxes": boxes, "scores": scores,
                "centers": [(b[:, :2] + b[:, 2:]) / 2 for b in boxes]}

    def _detect_mtcnn(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        from ..data.preprocess.detect import MTCNNDetector, select_face

        if self._mtcnn is None:
            self._mtcnn = MTCNNDetector(device=self.device)
        out = torch.full((flat.shape[0], 5, 2), float("nan"))
        ok = torch.zeros(flat.shape[0], dtype=torch.bool)
        for i, dets in enumerate(self._mtcnn.detect_batch([f.cpu() for f in flat])):
            if dets:
                out[i] = torch.as_tensor(select_face(dets).lm5, dtype=torch.float32)
                ok[i] = True
        return out.to(flat.device), ok


def build_landmark_source(spec: str | dict[str, Any] | None = "detector", device: str = "cpu") -> LandmarkSource:
    """A source from a name or ``{name: {options}}`` (profile YAML form)."""
    if spec is None:
        spec = "detector"
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise ValueError(f"landmark source must be a name or {{name: {{options}}}}, got {spec!r}")
        name, opts = next(iter(spec.items()))
        opts = dict(opts or {})
    else:
        name, opts = str(spec), {}
    if name == "detector":
        return DetectedLandmarks(device=device, **opts)
    if name == "gt":
        return GroundTruthLandmarks(**opts)
    if name == "gt_noise":
        return NoisyGroundTruthLandmarks(**opts)
    raise ValueError(f"unknown landmark source {name!r}; choose one of {SOURCES}")


__all__ = ["ROW_SUFFIX", "SOURCES", "DetectedLandmarks", "GroundTruthLandmarks", "LandmarkSource",
           "NoisyGroundTruthLandmarks", "build_landmark_source", "face_size"]
