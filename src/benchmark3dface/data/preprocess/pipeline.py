"""Photo -> aligned, annotated crop: the preprocessing a real photo goes through.

:class:`AlignCrop` is a ``Sample -> Sample`` callable usable as a reader's ``transform``: it
finds the 5 points (the sample's ``lm5``, else derived from ``lm68``, else detected with
MTCNN), optionally predicts 68 points with FAN, aligns and crops with Deng's rule
(:func:`~.align.align_face`), maps every 2D field into the crop, and adds the skin attention
mask. The photo -> crop transform is stored in ``meta["crop_transform"]`` (and composed into
``meta["image_transform"]``) so predictions map back to the photo.

Bad input is refused up front with a :class:`DataError` naming the file (one line, a reason
key that callers count): a photo smaller than :data:`~.align.MIN_PHOTO_SIDE` pixels on a side
(``too_small``), alignment landmarks more than :data:`~.align.LANDMARK_MARGIN_FRACTION` of the
photo's longer side outside it (``landmarks_outside``: the crop would be black padding), NaN
landmarks (``non_finite``) and landmarks that cannot define an alignment (all at one point, or
mirrored: ``bad_landmarks``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..readers.annotations import lm5_from_lm68
from ..readers.errors import DataError
from ..readers.imageio import load_image, to_tensor
from ..sample import Sample
from .align import LANDMARK_MARGIN_FRACTION, MIN_PHOTO_SIDE, align_face, landmark_margin_px, points_outside
from .detect import MTCNNDetector, select_face
from .landmarks68 import FANLandmarker
from .skin import skin_mask
from .transform import ScaleTranslation, warp_scale_translation

_MASKS = ("parse", "face_mask", "occlusion_mask", "depth")


def check_photo_size(height: int, width: int, path: str | Path, min_side: int = MIN_PHOTO_SIDE) -> None:
    """Raise ``DataError(reason="too_small")`` naming ``path`` when a ``height x width`` photo
    has a side below ``min_side`` pixels (checked before any detector sees it)."""
    h, w = int(height), int(width)
    if min(h, w) < min_side:
        raise DataError(path, f"image is {w}x{h} pixels, too small to hold a face (at least "
                        f"{min_side}x{min_side} needed)", "too_small")


def check_landmarks_inside(points: Tensor, height: int, width: int, path: str | Path,
                           what: str = "landmarks used for alignment",
                           fraction: float = LANDMARK_MARGIN_FRACTION) -> None:
    """Raise ``DataError(reason="landmarks_outside")`` naming ``path`` when a point of
    ``points`` ``(K, 2)`` (photo pixels) lies more than ``fraction`` of the photo's longer side
    outside the ``width x height`` photo."""
    margin = landmark_margin_px(height, width, fraction)
    out = points_outside(points, height, width, margin)
    if bool(out.any()):
        k = int(out.nonzero()[0, 0])
        x, y = (float(c) for c in points[k])
        raise DataError(path, f"{int(out.sum())} of {len(out)} {what} lie outside the {width}x{height} image "
                        f"by more than {margin:.0f} px (first: point {k} at ({x:.1f}, {y:.1f})); wrong landmark "
                        f"file for this photo?", "landmarks_outside")


def box_from_lm5(lm5: Tensor) -> Tensor:
    """A square face box (x0, y0, x1, y1) around 5 landmarks, sized like a detector box:
    side = 2.2 x max(eye distance, eye-to-mouth distance), centred between eyes and mouth."""
    eyes, mouth = lm5[:2].mean(0), lm5[3:].mean(0)
    d = max(float((lm5[1] - lm5[0]).norm()), float((mouth - eyes).norm()))
    c = (eyes + mouth) / 2
    half = 1.1 * d
    return torch.stack([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


class AlignCrop:
    """Align and crop a ``single`` sample around its face.

    Args:
        target5: ``(5, 2)`` target points in crop pixels (e.g. ``deng_target_points``).
        crop_size: output size.
        detector: used when the sample has no landmarks (``None``: such a sample is a
            ``DataError(reason="no_face")``).
        landmarker: optional :class:`FANLandmarker` to add ``lm68`` when missing.
        compute_skin: add ``skin_mask`` (Deng's attention) computed on the crop.
        face: which detection to keep when several faces are found (see ``select_face``).
    """

    def __init__(self, target5: Tensor, crop_size: int = 224, detector: MTCNNDetector | None = None,
                 landmarker: FANLandmarker | None = None, compute_skin: bool = True,
                 face: str = "largest") -> None:
        self.target5 = torch.as_tensor(target5, dtype=torch.float32)
        if self.target5.shape != (5, 2):
            raise ValueError(f"target5 must be (5, 2), got {tuple(self.target5.shape)}")
        self.crop_size = int(crop_size)
        self.detector = detector
        self.landmarker = landmarker
        self.compute_skin = compute_skin
        self.face = face

    def __call__(self, sample: Sample) -> Sample:
        if sample.kind != "single" or sample.image is None or sample.image.ndim != 3:
            raise ValueError("AlignCrop handles 'single' samples with a (3, H, W) image")
        path = sample.meta.get("path", sample.sample_id or "<sample>")
        img = sample.image
        check_photo_size(img.shape[-2], img.shape[-1], path)
        lm5, box = sample.lm5, None
        if lm5 is None and sample.lm68 is not None:
            lm5 = lm5_from_lm68(sample.lm68)
        if lm5 is None or (self.landmarker is not None and sample.lm68 is None):
            if self.detector is None and lm5 is None:
                raise DataError(path, "no 5-point landmarks and no detector given", "no_face")
            if self.detector is not None:
                det = select_face(self.detector.detect(img), self.face, tuple(img.shape[-2:]))
                if det is None:
                    raise DataError(path, "no face detected", "no_face")
                box = det.box
                if sample.lm68 is None and getattr(det, "lm68", None) is not None:
                    sample.lm68 = det.lm68  # BlazeFaceDetector predicts the 68 points too
                if lm5 is None:
                    lm5 = det.lm5
                    sample.meta["detection"] = {"box": det.box, "score": det.score}
        if self.landmarker is not None and sample.lm68 is None:
            sample.lm68 = self.landmarker(img, box if box is not None else box_from_lm5(lm5))[0][0]
        if not torch.isfinite(lm5).all():
            raise DataError(path, "5-point landmarks contain NaN/inf", "non_finite")
        check_landmarks_inside(lm5, int(img.shape[-2]), int(img.shape[-1]), path)
        try:
            aligned = align_face(img, lm5, self.target5, self.crop_size, lm68=sample.lm68)
        except ValueError as exc:  # degenerate or mirrored points: the landmarks are unusable
            raise DataError(path, f"cannot align with these 5-point landmarks: {exc}", "bad_landmarks") from None
        tr = aligned.transform
        sample.image, sample.lm5 = aligned.image, aligned.lm5
        sample.lm68 = aligned.lm68
        if sample.lm68_3d is not None:
            v = sample.lm68_3d.clone()
            v[:, :2] = tr.apply(v[:, :2])
            v[:, 2] = v[:, 2] * tr.scale
            sample.lm68_3d = v
        for name in _MASKS:
            m = getattr(sample, name)
            if m is not None:
                w = warp_scale_translation(m.float()[None], tr, (self.crop_size,) * 2, "nearest")[0]
                setattr(sample, name, w.to(m.dtype))
        if self.compute_skin:
            sample.skin_mask = skin_mask(sample.image, sample.lm5)
        elif sample.skin_mask is not None:
            sample.skin_mask = warp_scale_translation(sample.skin_mask.float()[None], tr,
                                                      (self.crop_size,) * 2, "bilinear")[0].clamp(0, 1)
        sample.meta["crop_transform"] = tr
        sample.meta["align_residual_px"] = aligned.residual
        prev = sample.meta.get("image_transform", ScaleTranslation.identity())
        sample.meta["image_transform"] = prev.then(tr)
        return sample


def preprocess_photo(photo: str | Path | Tensor | np.ndarray, target5: Tensor, crop_size: int = 224,
                     lm5: Tensor | None = None, detector: MTCNNDetector | None = None,
                     landmarker: FANLandmarker | None = None, compute_skin: bool = True,
                     lm68: Tensor | None = None, sample_id: str | None = None,
                     path: str | Path | None = None) -> Sample:
    """One user photo -> aligned ``Sample`` (the one photo preprocessing; ``b3f reconstruct``
    calls it too).

    Args:
        photo: a file path (read with EXIF orientation applied), a ``uint8`` ``(H, W, 3)`` RGB
            array or a float ``(3, H, W)`` tensor in [0, 1].
        target5: ``(5, 2)`` target points in crop pixels.
        lm5, lm68: optional ``(5, 2)`` / ``(68, 2)`` landmarks in photo pixels; without either a
            detector is needed (an MTCNN one is created on the CPU when none is given).
        sample_id: the sample's id (default: the file's stem, else ``"photo"``).
        path: the file named in errors and ``meta["path"]`` when ``photo`` is not a path.
    Raises:
        DataError naming the file (too small, landmarks outside, no face ...), see the module
        docstring; the size check runs before any detector is built or run.
    """
    if isinstance(photo, (str, Path)):
        path, photo = photo, load_image(photo, exif_transpose=True)
    image = to_tensor(photo) if isinstance(photo, np.ndarray) else photo
    meta = {} if path is None else {"path": str(path)}
    check_photo_size(image.shape[-2], image.shape[-1], path if path is not None else "<photo>")
    if lm5 is None and lm68 is None and detector is None:
        detector = MTCNNDetector()
    s = Sample(kind="single", sample_id=sample_id or Path(meta.get("path", "photo")).stem, image=image,
               lm5=None if lm5 is None else torch.as_tensor(lm5, dtype=torch.float32),
               lm68=None if lm68 is None else torch.as_tensor(lm68, dtype=torch.float32),
               labelled=False, meta=meta)
    s.meta["orig_size"] = tuple(image.shape[-2:])
    return AlignCrop(target5, crop_size, detector, landmarker, compute_skin)(s)
