"""68 landmarks for face boxes: the converted face-api network (default when its weights are
cached) or face-alignment's FAN (Bulat & Tzimiropoulos 2017, from local weights only).

:func:`make_landmarker` picks the source: ``"auto"`` = :class:`FaceNetLandmarker` (face-api's
68-point network converted to PyTorch, :mod:`benchmark3dface.facenets`; weights from
``b3f weights fetch faceapi_landmark68``) when cached, else FAN when its weight file is found,
else none; ``"faceapi"``, ``"facemesh"`` or ``"fan"`` ask for one explicitly. Both landmarkers
take ``(image, boxes)`` and return ``(F, 68, 2)`` points in photo pixels and ``(F, 68)`` scores.

FAN:

The ``face_alignment`` package downloads its weights on first use; this wrapper never lets it:
it looks for the weight file itself and raises :class:`MissingWeightsError` (naming the file,
where it was looked for, and where to get it) when it is absent. Accepted files:

- ``2DFAN4-11f355bf06.pth.tar`` (state dict, face-alignment >= 1.4), loaded into
  ``face_alignment.models.FAN(4)``;
- ``2DFAN4-cd938726ad.zip`` (TorchScript, face-alignment 1.3).

Search order: the explicit ``weights`` path, ``$B3F_FAN_WEIGHTS``, then
``torch.hub.get_dir()/checkpoints/`` (where face_alignment caches them).

Geometry (own implementation of FAN's crop rule, in the continuous pixel convention): for a
face box (x0, y0, x1, y1) the crop is a square of side ``200 (w + h) / 195`` pixels centred on
the box centre moved up by ``0.12 h``, resampled to 256x256; FAN's 64x64 heatmaps are decoded by
arg-max with a quarter-pixel shift toward the larger neighbour, heatmap pixel centres are at
``(j + 0.5) * 4`` crop pixels, and points are mapped back to the photo with the inverse crop
transform. Horizontal-flip test-time augmentation averages the heatmaps.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..readers.annotations import IBUG68_FLIP
from ..readers.imageio import as_float_chw
from .transform import ScaleTranslation, warp_scale_translation

FAN_WEIGHT_FILES = ("2DFAN4-11f355bf06.pth.tar", "2DFAN4-cd938726ad.zip")
FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
CROP = 256
HEATMAP = 64
REFERENCE_SCALE = 195.0
CENTER_Y_OFFSET = 0.12


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file needed for an optional preprocessing step is not on disk."""


def fan_search_paths(weights: str | Path | None = None) -> list[Path]:
    """Candidate weight files in search order."""
    paths: list[Path] = []
    if weights is not None:
        p = Path(weights).expanduser()
        paths += [p / n for n in FAN_WEIGHT_FILES] if p.is_dir() else [p]
    env = os.environ.get("B3F_FAN_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        paths += [p / n for n in FAN_WEIGHT_FILES] if p.is_dir() else [p]
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    paths += [hub / n for n in FAN_WEIGHT_FILES]
    return paths


def find_fan_weights(weights: str | Path | None = None) -> Path:
    """The first existing FAN weight file, else :class:`MissingWeightsError`. Never downloads."""
    cands = fan_search_paths(weights)
    for p in cands:
        if p.is_file():
            return p
    if weights is not None and not Path(weights).expanduser().exists():
        head = f"FAN weight file {weights} not found"
    else:
        head = "FAN 68-landmark weights not found"
    raise MissingWeightsError(
        f"{head}. Looked for: {', '.join(str(p) for p in cands)}. The file needed is "
        f"{FAN_WEIGHT_FILES[0]} (face-alignment's 2D-FAN-4, BSD-3-Clause), published at "
        f"{FAN_URL}; download it yourself and pass its path (weights=... or $B3F_FAN_WEIGHTS) "
        f"or place it in {Path(torch.hub.get_dir()) / 'checkpoints'}. Nothing is downloaded "
        "automatically.")


def load_fan(path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load FAN from a local weight file (see module docstring)."""
    path = Path(path)
    if path.suffix == ".zip":
        net = torch.jit.load(str(path), map_location=device)
    else:
        from face_alignment.models import FAN

        net = FAN(4)
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        net.load_state_dict(state)
    return net.to(device).eval()


def fan_crop_transform(box: Tensor) -> ScaleTranslation:
    """Photo -> 256x256 FAN crop for a face box (x0, y0, x1, y1) in pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - CENTER_Y_OFFSET * h
    side = 200.0 * (w + h) / REFERENCE_SCALE
    s = CROP / side
    return ScaleTranslation(s, (CROP / 2 - s * cx, CROP / 2 - s * cy))


def decode_heatmaps(hm: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, 68, 64, 64)`` heatmaps -> points ``(B, 68, 2)`` in heatmap pixels (continuous
    convention, arg-max plus a quarter pixel toward the larger neighbour) and scores
    ``(B, 68)`` (the maxima)."""
    b, k, h, w = hm.shape
    flat = hm.reshape(b, k, h * w)
    score, idx = flat.max(-1)
    iy, ix = idx // w, idx % w
    pad = torch.nn.functional.pad(hm, (1, 1, 1, 1), mode="replicate")
    bi = torch.arange(b)[:, None]
    ki = torch.arange(k)[None]
    dx = pad[bi, ki, iy + 1, ix + 2] - pad[bi, ki, iy + 1, ix]
    dy = pad[bi, ki, iy + 2, ix + 1] - pad[bi, ki, iy, ix + 1]
    inner = (ix > 0) & (ix < w - 1) & (iy > 0) & (iy < h - 1)
    px = ix.float() + 0.5 + 0.25 * torch.sign(dx) * inner
    py = iy.float() + 0.5 + 0.25 * torch.sign(dy) * inner
    return torch.stack([px, py], -1), score


class FANLandmarker:
    """68-point landmarks for faces given by boxes (e.g. from :class:`MTCNNDetector`).

    Args:
        weights: path to the weight file or a folder holding it (see module docstring).
        device: torch device.
        flip_test: average with the horizontally flipped crop.
        net: an already built network (tests / custom models); skips the weight search.
    """

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu",
                 flip_test: bool = True, net: nn.Module | None = None) -> None:
        self.device = torch.device(device)
        self.flip_test = flip_test
        if net is None:
            self.weights_path = find_fan_weights(weights)
            net = load_fan(self.weights_path, self.device)
        else:
            self.weights_path = None
        self.net = net.to(self.device).eval()

    def _forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out

    @torch.no_grad()
    def __call__(self, image, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Landmarks for each box.

        Args:
            image: ``(3, H, W)`` float in [0, 1] (or uint8 array / Pillow image).
            boxes: ``(F, 4)`` or ``(4,)`` face boxes, pixels.
        Returns:
            ``(F, 68, 2)`` landmarks in photo pixels and ``(F, 68)`` heatmap scores.
        """
        img = as_float_chw(image).float()
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        trs = [fan_crop_transform(b) for b in boxes]
        crops = torch.stack([warp_scale_translation(img, t, (CROP, CROP), "bilinear").clamp(0, 1)
                             for t in trs]).to(self.device)
        hm = self._forward(crops)
        if self.flip_test:
            hm_f = self._forward(crops.flip(-1)).flip(-1)[:, list(IBUG68_FLIP)]
            hm = hm + hm_f
        pts, score = decode_heatmaps(hm.float().cpu())
        pts = pts * (CROP / HEATMAP)
        out = torch.stack([t.apply_inverse(p) for t, p in zip(trs, pts)])
        return out, score / (2.0 if self.flip_test else 1.0)


LANDMARKERS = ("auto", "faceapi", "facemesh", "fan")


class FaceNetLandmarker:
    """68 points from the converted networks (:class:`benchmark3dface.facenets.landmarks.
    Landmarker68`: face-api's 68-point net, or FaceMesh -> 68) with :class:`FANLandmarker`'s
    call: ``(image, boxes) -> (F, 68, 2) points, (F, 68) scores`` (1 where a face box was
    usable, NaN points and 0 scores otherwise; the networks give no per-point confidence).

    The crop is the face box squared and enlarged 1.2x (1.4x for FaceMesh), no rotation.
    Raises ``WeightsNotFetchedError`` (naming ``b3f weights fetch ...``) when not cached.
    """

    def __init__(self, device: str | torch.device = "cpu", method: str = "faceapi") -> None:
        from ...facenets.landmarks import Landmarker68

        self.device = torch.device(device)
        self.method = method
        self.model = Landmarker68(self.device, method=method)

    @torch.no_grad()
    def __call__(self, image, boxes: Tensor) -> tuple[Tensor, Tensor]:
        img = as_float_chw(image).float()
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        lm, ok = self.model(img[None].expand(boxes.shape[0], -1, -1, -1), boxes)
        return lm, ok.float()[:, None].expand(-1, 68).clone()


def make_landmarker(name: str = "auto", device: str | torch.device = "cpu", weights: str | Path | None = None):
    """A 68-point landmarker by name (see the module docstring); ``"auto"`` returns None when
    neither the converted weights nor FAN's are available. ``weights``: FAN's weight file."""
    if name not in LANDMARKERS:
        raise ValueError(f"unknown 68-point landmarker {name!r}; choose one of {LANDMARKERS}")
    if name == "auto":
        from ...facenets.landmarks import available

        if available("faceapi_landmark68"):
            return FaceNetLandmarker(device)
        try:
            return FANLandmarker(weights, device)
        except (MissingWeightsError, ImportError):
            return None
    if name == "fan":
        return FANLandmarker(weights, device)
    return FaceNetLandmarker(device, method=name)
