"""Face detection and 68 landmarks on real photos with the converted networks -- the public API
the rest of the project uses (preprocessing, ``b3f reconstruct``, the ``detector`` landmark
source).

- :class:`FaceDetector`: BlazeFace short range (:mod:`.mediapipe`). The image is letterboxed
  (zero-padded to a centred square), resized to 128x128 with anti-aliasing, scaled to [-1, 1];
  detections are decoded against the 896 anchors and merged by MediaPipe's *weighted*
  non-maximum suppression (IoU 0.3), then mapped back to image pixels.
- :class:`Landmarker68`: face-api's 68-point network (``method="faceapi"``, default) or
  FaceMesh's 468 points reduced to 68 through the FaceMesh -> iBUG-68 correspondence of
  ``@vladmandic/human`` (``method="facemesh"``). Crop rule: the face box squared (side = the
  longer side) and enlarged ``box_scale`` times about its centre, no rotation (rotating by
  BlazeFace's eye keypoints was measured to hurt); face-api sees it at 112 px with
  ``box_scale`` 1.2 (NME on the 8 AFLW2000-3D test images: 5.5 %; 6.7 % at 1.1, 6.0 % at 1.3),
  FaceMesh at 192 px with 1.4 (as ``@vladmandic/human`` crops; 5.8 %).
- :class:`FaceMesh468`: the 468 FaceMesh points (x, y px; z relative depth in px, smaller =
  nearer the camera) of the face in each image, for parse masks (:mod:`.parse`).

All coordinates follow docs/conventions.md: continuous pixel coordinates, origin at the image's
top-left corner, pixel centres at +0.5. The weights come from the cache (``b3f weights fetch
blazeface faceapi_landmark68 facemesh``); a missing one raises ``WeightsNotFetchedError``
naming the command. Use :func:`available` to test for them without loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from ..facemodel import lm68_to_lm5 as _lm68_to_lm5
from .mediapipe import BLAZEFACE_SIZE, FACEMESH_SIZE, blazeface_anchors, decode_blazeface, weighted_nms

FACEAPI_SIZE = 112
#: sources each method needs (detection needs "blazeface" in addition when no boxes are given)
METHOD_SOURCES = {"faceapi": "faceapi_landmark68", "facemesh": "facemesh"}
DEFAULT_BOX_SCALE = {"faceapi": 1.2, "facemesh": 1.4}


def available(*names: str) -> bool:
    """True when every named weight source is cached (default: BlazeFace + face-api 68)."""
    from ..weights import available as _available

    return all(_available(n) for n in (names or ("blazeface", "faceapi_landmark68")))


def lm68_to_lm5(lm68: Tensor) -> Tensor:
    """Deng's 5 points (eye centres, nose tip, mouth corners) from iBUG-68 points:
    ``(..., 68, D) -> (..., 5, D)`` (:func:`benchmark3dface.facemodel.lm68_to_lm5`)."""
    return _lm68_to_lm5(lm68)


@lru_cache(maxsize=1)
def facemesh_to_68() -> tuple[int, ...]:
    """FaceMesh vertex index of each iBUG-68 landmark (``VTX68`` of @vladmandic/human)."""
    from .parse import topology

    return tuple(int(i) for i in topology()["vtx68"])


# ----------------------------------------------------------------------------- geometry
def square_box(box: Tensor, scale: float = 1.0) -> Tensor:
    """``(..., 4)`` boxes (x0, y0, x1, y1) -> squares of side ``scale * max(w, h)`` about the
    same centres."""
    c = (box[..., :2] + box[..., 2:]) / 2
    half = (box[..., 2:] - box[..., :2]).amax(-1, keepdim=True) * (scale / 2)
    return torch.cat([c - half, c + half], -1)


def crop_square(image: Tensor, box: Tensor, size: int) -> Tensor:
    """The square ``box`` (x0, y0, x1, y1) of ``image`` (3, H, W) resampled to ``(3, size,
    size)``: anti-aliased bilinear (Pillow), zeros outside the image."""
    from ..data.preprocess.transform import ScaleTranslation, warp_scale_translation

    x0, y0, x1, _y1 = (float(v) for v in box)
    s = size / (x1 - x0)
    tr = ScaleTranslation(s, (-s * x0, -s * y0))
    return warp_scale_translation(image.float(), tr, (size, size), "bilinear").clamp(0, 1)


def _letterbox(image: Tensor, size: int) -> tuple[Tensor, float, float, float]:
    """(3, H, W) -> (3, size, size) zero-padded centred square resized with anti-aliasing, and
    the map back: ``image_px = input_px * scale - (pad_x, pad_y)``."""
    _, h, w = image.shape
    side = max(h, w)
    px, py = (side - w) // 2, (side - h) // 2
    sq = F.pad(image, (px, side - w - px, py, side - h - py))
    x = F.interpolate(sq[None].float(), size=(size, size), mode="bilinear", align_corners=False,
                      antialias=side > size)[0]
    return x.clamp(0, 1), side / size, float(px), float(py)


def _check_images(images: Tensor, what: str) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{what}: expected images (B, 3, H, W) float in [0, 1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{what}: expected float images in [0, 1], got {images.dtype}")
    return images


# ----------------------------------------------------------------------------- detection
@dataclass
class Detection:
    """One face: ``box`` (4,) x0, y0, x1, y1 in image pixels; ``score`` in [0, 1];
    ``keypoints`` (6, 2) pixels: right eye, left eye (subject's; the first is on the viewer's
    left), nose tip, mouth centre, right ear tragion, left ear tragion."""

    box: Tensor
    score: float
    keypoints: Tensor


class FaceDetector:
    """BlazeFace short range (see module docstring).

    Args:
        device: torch device of the network.
        score_threshold: detections below this score are dropped.
        iou_threshold: weighted-NMS overlap above which detections are merged.
    """

    def __init__(self, device: str | torch.device = "cpu", score_threshold: float = 0.5,
                 iou_threshold: float = 0.3) -> None:
        from .mediapipe import load_blazeface

        self.device = torch.device(device)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.net = load_blazeface(self.device)
        self.anchors = blazeface_anchors(BLAZEFACE_SIZE)

    @torch.no_grad()
    def detect_batch(self, images: Tensor | list[Tensor]) -> list[list[Detection]]:
        """Faces of each image (a (B, 3, H, W) tensor or a list of (3, H, W) of any sizes),
        each list sorted by decreasing score."""
        imgs = list(images) if isinstance(images, (list, tuple)) else list(_check_images(images, "FaceDetector"))
        if not imgs:
            return []
        for im in imgs:
            _check_images(im[None] if isinstance(im, Tensor) else im, "FaceDetector")
        boxed = [_letterbox(im.detach().to("cpu"), BLAZEFACE_SIZE) for im in imgs]
        x = torch.stack([b[0] for b in boxed]).to(self.device) * 2.0 - 1.0
        raw = self.net(x).float().cpu()
        scores, boxes, kps = decode_blazeface(raw, self.anchors)
        out = []
        for i, (_, scale, px, py) in enumerate(boxed):
            dets = []
            off = torch.tensor([px, py])
            for s, b, k in weighted_nms(scores[i], boxes[i], kps[i], self.iou_threshold, self.score_threshold):
                dets.append(Detection(b * scale - off.repeat(2), s, k * scale - off))
            out.append(dets)
        return out

    def __call__(self, image: Tensor) -> list[Detection]:
        """Faces in one image ``(3, H, W)`` float in [0, 1] of any size, by decreasing score."""
        if not isinstance(image, Tensor) or image.ndim != 3:
            raise ValueError(f"FaceDetector: expected an image (3, H, W) float in [0, 1], got "
                             f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
        return self.detect_batch([image])[0]


# ----------------------------------------------------------------------------- landmarks
class _Cropper:
    """Shared logic: boxes (given or detected) -> square crops -> network -> image pixels."""

    crop_size: int

    def __init__(self, device, detector: FaceDetector | None, box_scale: float) -> None:
        self.device = torch.device(device)
        self._detector = detector
        self.box_scale = float(box_scale)

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector(self.device)
        return self._detector

    def face_boxes(self, images: Tensor, boxes: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, 4) face boxes (NaN where no face) and (B,) found flags."""
        b = images.shape[0]
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            if boxes.shape[0] != b:
                raise ValueError(f"{type(self).__name__}: {boxes.shape[0]} boxes for {b} images")
            ok = torch.isfinite(boxes).all(-1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            return boxes.cpu(), ok.cpu()
        out = torch.full((b, 4), float("nan"))
        ok = torch.zeros(b, dtype=torch.bool)
        for i, dets in enumerate(self.detector.detect_batch(images)):
            if dets:
                out[i] = max(dets, key=lambda d: d.score).box
                ok[i] = True
        return out, ok

    def start(self, images: Tensor, boxes: Tensor | None, shape: tuple[int, ...], who: str):
        """Common first steps of a call: checked ``(B, 3, H, W)`` images, face boxes and ``ok``,
        the NaN-filled output ``(B, *shape)``, and the crops of the found faces (None when
        there are none)."""
        if isinstance(images, Tensor) and images.ndim == 3:
            images = images[None]
        images = _check_images(images, who)
        boxes, ok = self.face_boxes(images, boxes)
        out = torch.full((images.shape[0], *shape), float("nan"))
        crops = self.crops(images, boxes, ok) if ok.any() else None
        return out, ok, crops

    def crops(self, images: Tensor, boxes: Tensor, ok: Tensor) -> tuple[Tensor, Tensor]:
        """Crops (K, 3, S, S) of the found faces and their square boxes (B, 4)."""
        sq = square_box(boxes, self.box_scale)
        imgs = images.detach().cpu()
        crops = [crop_square(imgs[i], sq[i], self.crop_size) for i in range(images.shape[0]) if ok[i]]
        x = torch.stack(crops) if crops else torch.zeros(0, 3, self.crop_size, self.crop_size)
        return x.to(self.device), sq

    def to_image(self, pts_crop: Tensor, sq: Tensor) -> Tensor:
        """(K, P, D) crop pixels -> image pixels (x, y; a third coordinate scaled alike)."""
        s = (sq[:, 2] - sq[:, 0]) / self.crop_size
        out = pts_crop * s[:, None, None]
        out[..., 0] += sq[:, None, 0]
        out[..., 1] += sq[:, None, 1]
        return out


class Landmarker68(_Cropper):
    """68 iBUG landmarks per image (see module docstring).

    Args:
        device: torch device of the networks.
        method: ``"faceapi"`` (face-api's 68-point network) or ``"facemesh"`` (FaceMesh 468 ->
            68).
        detector: the :class:`FaceDetector` used when no boxes are given (created on first
            use otherwise).
        box_scale: enlargement of the squared face box (default 1.2 for face-api, 1.4 for
            FaceMesh).
    """

    def __init__(self, device: str | torch.device = "cpu", method: str = "faceapi",
                 detector: FaceDetector | None = None, box_scale: float | None = None) -> None:
        if method not in METHOD_SOURCES:
            raise ValueError(f"Landmarker68: method must be one of {sorted(METHOD_SOURCES)}, got {method!r}")
        super().__init__(device, detector, DEFAULT_BOX_SCALE[method] if box_scale is None else box_scale)
        self.method = method
        if method == "faceapi":
            from .faceapi import load_landmark_net

            self.net = load_landmark_net(self.device)
            self.crop_size = FACEAPI_SIZE
        else:
            from .mediapipe import load_facemesh

            self.net = load_facemesh(self.device)
            self.crop_size = FACEMESH_SIZE
            self.index68 = torch.tensor(facemesh_to_68())

    @torch.no_grad()
    def __call__(self, images: Tensor, boxes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Landmarks of one face per image.

        Args:
            images: ``(B, 3, H, W)`` float in [0, 1] (a single ``(3, H, W)`` is accepted).
            boxes: ``(B, 4)`` face boxes (x0, y0, x1, y1) px, or None to detect (the highest
                scoring face of each image).
        Returns:
            ``lm68`` (B, 68, 2) pixels (NaN where no face), ``ok`` (B,) bool.
        """
        lm, ok, crops = self.start(images, boxes, (68, 2), "Landmarker68")
        if crops is None:
            return lm, ok
        x, sq = crops
        if self.method == "faceapi":
            pts = self.net(x).float().cpu() * self.crop_size
        else:
            pts = self.net(x)["mesh"].float().cpu()[:, self.index68, :2]
        lm[ok] = self.to_image(pts, sq[ok])
        return lm, ok


class FaceMesh468(_Cropper):
    """FaceMesh's 468 points of one face per image (see module docstring).

    ``__call__(images, boxes=None) -> (mesh (B, 468, 3), ok (B,))``: x, y in image pixels, z
    relative depth in the same pixel scale (smaller = nearer the camera); NaN where no face was
    found or FaceMesh's face probability is below ``min_face_score``.
    """

    crop_size = FACEMESH_SIZE

    def __init__(self, device: str | torch.device = "cpu", detector: FaceDetector | None = None,
                 box_scale: float = DEFAULT_BOX_SCALE["facemesh"], min_face_score: float = 0.5) -> None:
        from .mediapipe import load_facemesh

        super().__init__(device, detector, box_scale)
        self.net = load_facemesh(self.device)
        self.min_face_score = float(min_face_score)

    @torch.no_grad()
    def __call__(self, images: Tensor, boxes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mesh, ok, crops = self.start(images, boxes, (468, 3), "FaceMesh468")
        if crops is None:
            return mesh, ok
        x, sq = crops
        out = self.net(x)
        idx = torch.nonzero(ok).flatten()
        good = out["face_flag"].float().cpu() >= self.min_face_score
        mesh[idx[good]] = self.to_image(out["mesh"].float().cpu()[good], sq[ok][good])
        ok = ok.clone()
        ok[idx[~good]] = False
        return mesh, ok


def nme_68(pred: Tensor, gt: Tensor) -> Tensor:
    """AFLW2000-3D NME per face: mean point distance / sqrt(w h) of the GT 68-point box.
    ``(B, 68, 2)`` x2 -> ``(B,)`` (NaN where ``pred`` is NaN)."""
    wh = gt.amax(-2) - gt.amin(-2)
    return (pred - gt).norm(dim=-1).mean(-1) / (wh[..., 0] * wh[..., 1]).sqrt()
