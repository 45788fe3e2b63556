"""Face detection and 5 landmarks: facenet-pytorch's MTCNN (weights ship in the package) or
BlazeFace + face-api's 68 points (:class:`BlazeFaceDetector`, converted networks of
:mod:`benchmark3dface.facenets`, weights from ``b3f weights fetch blazeface faceapi_landmark68``).
:func:`make_detector` picks one (``"auto"``: BlazeFace when its weights are cached, else MTCNN).

MTCNN returns its 5 points as (eye, eye, nose, mouth corner, mouth corner) with the first of
each pair on the viewer's left of an upright face; :data:`MTCNN_TO_CONVENTION` reorders them to
the conventions' 5-point order (left eye centre, right eye centre, nose tip, left mouth corner,
right mouth corner; "left" = viewer's left). The two orders coincide, so the permutation is the
identity; it is kept explicit (and checked against reference 5-point files in the tests) so a
detector with another order only needs a different table. MTCNN coordinates are used as
continuous pixel coordinates (no half-pixel shift: below the detector's precision).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..readers.imageio import as_uint8_hwc

#: Index into MTCNN's 5 points for each conventions point (Deng's order).
MTCNN_TO_CONVENTION = (0, 1, 2, 3, 4)


@dataclass
class FaceDetection:
    """One detected face: ``box`` (4,) = (x0, y0, x1, y1) pixels, ``score`` in [0, 1],
    ``lm5`` (5, 2) pixels in the conventions' order, ``lm68`` (68, 2) pixels when the detector
    also predicts the 68 points (:class:`BlazeFaceDetector`), else None."""

    box: Tensor
    score: float
    lm5: Tensor
    lm68: Tensor | None = None

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]).clamp(min=0) * (self.box[3] - self.box[1]).clamp(min=0))


def select_face(dets: list[FaceDetection], strategy: str = "largest",
                image_size: tuple[int, int] | None = None) -> FaceDetection | None:
    """Pick one face: ``"largest"`` box, highest ``"score"``, or most ``"central"`` (needs
    ``image_size`` = (H, W))."""
    if not dets:
        return None
    if strategy == "largest":
        return max(dets, key=lambda d: d.area)
    if strategy == "score":
        return max(dets, key=lambda d: d.score)
    if strategy == "central":
        if image_size is None:
            raise ValueError("strategy 'central' needs image_size")
        cy, cx = image_size[0] / 2, image_size[1] / 2

        def dist2(d: FaceDetection) -> float:
            return float(((d.box[0] + d.box[2]) / 2 - cx) ** 2 + ((d.box[1] + d.box[3]) / 2 - cy) ** 2)

        return min(dets, key=dist2)
    raise ValueError(f"unknown strategy {strategy!r}")


class MTCNNDetector:
    """facenet-pytorch MTCNN wrapper returning :class:`FaceDetection` lists.

    Args:
        device: torch device for the three small networks.
        min_face_size: smallest face searched, pixels.
        thresholds: P-/R-/O-Net score thresholds.
        min_score: detections below this final score are dropped.
    """

    name = "mtcnn"

    def __init__(self, device: str | torch.device = "cpu", min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 min_score: float = 0.9) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("face detection needs facenet-pytorch: pip install --no-deps "
                              "facenet-pytorch (its MTCNN weights ship inside the package)") from e
        self.device = torch.device(device)
        self.min_score = float(min_score)
        self._mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=min_face_size,
                            thresholds=list(thresholds), factor=factor, post_process=False)

    def detect(self, image) -> list[FaceDetection]:
        """Faces in one image (Pillow image, uint8 HxWx3 array or float (3, H, W) tensor),
        sorted by decreasing score."""
        return self.detect_batch([image])[0]

    @torch.no_grad()
    def detect_batch(self, images: list) -> list[list[FaceDetection]]:
        """Faces in several images. Same-size images go through MTCNN as one batch."""
        arrays = [as_uint8_hwc(im) for im in images]
        out: list[list[FaceDetection]] = [[] for _ in arrays]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        for idxs in groups.values():
            batch = np.stack([arrays[i] for i in idxs])
            boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
            for j, i in enumerate(idxs):
                out[i] = self._to_detections(boxes[j], probs[j], points[j])
        return out

    def _to_detections(self, boxes, probs, points) -> list[FaceDetection]:
        if boxes is None or points is None:
            return []
        boxes = np.asarray(list(boxes), dtype=np.float64).reshape(-1, 4)
        probs = np.asarray(list(probs), dtype=np.float64).reshape(-1)
        points = np.asarray(list(points), dtype=np.float64).reshape(-1, 5, 2)
        dets = [FaceDetection(torch.from_numpy(b).float(), float(p),
                              torch.from_numpy(pt[list(MTCNN_TO_CONVENTION)]).float())
                for b, p, pt in zip(boxes, probs, points) if p >= self.min_score]
        return sorted(dets, key=lambda d: -d.score)


DETECTORS = ("auto", "mtcnn", "blazeface")


class BlazeFaceDetector:
    """BlazeFace boxes + the 68 points of face-api's converted network (the 5 points derived
    from the 68: eye centres mean(36, 39) / mean(42, 45), nose tip 30, mouth corners 48, 54),
    returning :class:`FaceDetection` lists like :class:`MTCNNDetector`.

    Args:
        device: torch device of the networks.
        min_score: BlazeFace detections below this score are dropped.
        method: 68-point network, ``"faceapi"`` (default) or ``"facemesh"``.
    Raises:
        WeightsNotFetchedError: the ``blazeface`` / ``faceapi_landmark68`` (or ``facemesh``)
            weights are not cached; the message names ``b3f weights fetch ...``.
    """

    def __init__(self, device: str | torch.device = "cpu", min_score: float = 0.5, method: str = "faceapi") -> None:
        from ...facenets.landmarks import FaceDetector, Landmarker68

        self.name = f"blazeface+{method}68"
        self.device = torch.device(device)
        self.detector = FaceDetector(self.device, score_threshold=min_score)
        self.landmarker = Landmarker68(self.device, method=method, detector=self.detector)

    def detect(self, image) -> list[FaceDetection]:
        """Faces in one image (Pillow image, uint8 HxWx3 array or float (3, H, W) tensor),
        sorted by decreasing score."""
        return self.detect_batch([image])[0]

    @torch.no_grad()
    def detect_batch(self, images: list) -> list[list[FaceDetection]]:
        from ..readers.imageio import as_float_chw
        from ...facemodel import lm68_to_lm5

        floats = [as_float_chw(im).float().cpu() for im in images]
        out: list[list[FaceDetection]] = []
        for img, dets in zip(floats, self.detector.detect_batch(floats)):
            if not dets:
                out.append([])
                continue
            boxes = torch.stack([d.box for d in dets])
            lm68, ok = self.landmarker(img[None].expand(len(dets), -1, -1, -1), boxes)
            out.append([FaceDetection(d.box.float(), d.score, lm68_to_lm5(lm68[k]), lm68[k])
                        for k, d in enumerate(dets) if ok[k]])
        return out


def make_detector(name: str = "auto", device: str | torch.device = "cpu", **kwargs):
    """A face detector by name: ``"mtcnn"`` (:class:`MTCNNDetector`), ``"blazeface"``
    (:class:`BlazeFaceDetector`, needs its cached weights) or ``"auto"`` (BlazeFace when the
    ``blazeface`` and ``faceapi_landmark68`` weights are cached, else MTCNN)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {DETECTORS}")
    if name == "auto":
        from ...facenets.landmarks import available

        name = "blazeface" if available("blazeface", "faceapi_landmark68") else "mtcnn"
    if name == "blazeface":
        return BlazeFaceDetector(device, **kwargs)
    return MTCNNDetector(device, **kwargs)
