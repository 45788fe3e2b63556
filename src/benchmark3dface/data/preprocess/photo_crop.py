"""Photo-folder training transform: detect the face, align it with the 5 points, add 68 points.

:class:`PhotoAlignCrop` is :class:`~.pipeline.AlignCrop` built from plain constructor arguments
(a face model source, detector and landmarker names), so a LightningCLI config can give it as a
reader's ``transform`` (:class:`~benchmark3dface.data.datamodules.ReaderDataModule`)::

    data:
      class_path: benchmark3dface.data.datamodules.ReaderDataModule
      init_args:
        reader: image_folder
        root: /path/to/photos
        image_size: null       # the transform sees each photo at its native resolution
        train_split: all
        transform:
          class_path: benchmark3dface.data.preprocess.photo_crop.PhotoAlignCrop
          init_args: {crop_size: 112}

Per photo (``(3, H, W)`` image in [0, 1], photo pixels, docs/conventions.md):

1. the 5 points: the reader's landmark file (``NAME.txt`` with 5 points, or 68 points in
   ``NAME.pts`` / ``NAME.txt``) when ``landmark_files``, else the detector's;
2. the 68 points (when no file gave them): BlazeFace + face-api's converted 68-point network
   (``detector="auto"`` with its weights cached), else the ``landmarker`` in the detector's box;
3. Deng's alignment (least-squares scale + translation of the 5 points onto the face model's
   mean-face 5 points for a ``crop_size`` crop, :func:`~.align.deng_target_points`), every 2D
   field mapped into the crop, and the skin attention mask computed on the crop.

The crop's ``lm68`` are the training landmarks of Deng's landmark loss. A photo whose 68 points
cannot be found (no face, NaN points: ``no_face``) or whose detected face is not the one of its
5-point file (``bad_landmarks``: the 5 points derived from the detected 68 lie more than
``max_mismatch`` inter-ocular distances from the file's on average) is a
:class:`~benchmark3dface.data.readers.errors.DataError` naming the photo, which a non-strict
reader skips and counts. ``meta["lm68_source"]`` records where the 68 points came from.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..readers.errors import DataError
from ..sample import Sample


def lm5_mismatch(lm5: Tensor, lm68: Tensor) -> float:
    """Mean distance between ``lm5`` ``(5, 2)`` and the 5 points derived from ``lm68``
    ``(68, 2)`` (eye centres mean(36, 39) / mean(42, 45), nose tip 30, mouth corners 48, 54),
    in units of the inter-ocular distance of ``lm5`` (distance of its two eye centres)."""
    from ..readers.annotations import lm5_from_lm68

    iod = float((lm5[1] - lm5[0]).norm())
    if iod <= 0.0:
        return float("inf")
    return float((lm5_from_lm68(lm68.double()) - lm5.double()).norm(dim=-1).mean()) / iod


class PhotoAlignCrop:
    """``Sample -> Sample``: a real photo -> aligned crop with 5 and 68 landmarks and a skin mask.

    Args:
        crop_size: output side in pixels (the method's input size).
        facemodel / facemodel_path: the face model whose mean face sets the 5 target points
            (``load_facemodel`` source; must be the method's model).
        detector: ``auto`` | ``blazeface`` | ``mtcnn`` (:func:`~.detect.make_detector`).
        landmarker: 68-point network used when the detector gives no 68 points: ``auto`` |
            ``faceapi`` | ``facemesh`` | ``fan`` | ``none`` (:func:`~.landmarks68.make_landmarker`).
        landmark_files: use the reader's landmark files (False: the detector's points only).
        require_lm68: a photo without finite 68 points is a ``DataError`` (training needs them).
        max_mismatch: largest mean distance (inter-ocular units) between a 5-point file and the
            5 points of the detected 68 before the detection counts as another face.
        compute_skin: add Deng's skin attention mask computed on the crop.
        face: which detection to keep when several are found (``largest`` | ``score`` | ``central``).
        device: torch device of the detection networks.
    Raises:
        WeightsNotFetchedError: a named network's converted weights are not cached (the message
            names ``b3f weights fetch ...``).
        ValueError: ``require_lm68`` and no 68-point network is available.
    """

    def __init__(self, crop_size: int = 224, facemodel: str = "procedural", facemodel_path: str | None = None,
                 detector: str = "auto", landmarker: str = "auto", landmark_files: bool = True,
                 require_lm68: bool = True, max_mismatch: float = 0.5, compute_skin: bool = True,
                 face: str = "largest", device: str = "cpu") -> None:
        from ...facemodel import load_facemodel
        from .align import deng_target_points
        from .detect import make_detector
        from .landmarks68 import make_landmarker
        from .pipeline import AlignCrop

        if int(crop_size) < 16:
            raise ValueError(f"crop_size must be at least 16 pixels, got {crop_size}")
        det = make_detector(detector, device)
        lmk = None if landmarker == "none" else make_landmarker(landmarker, device)
        if require_lm68 and lmk is None and not hasattr(det, "landmarker"):
            raise ValueError("training needs 68-point landmarks but no 68-point network is available: run "
                             "`b3f weights fetch blazeface faceapi_landmark68` (docs/weights.md)")
        fm = load_facemodel(facemodel, facemodel_path)
        target5 = deng_target_points(fm.mean_shape.detach().cpu().double(), fm.landmarks68.cpu(), int(crop_size))
        self.landmark_files = bool(landmark_files)
        self.require_lm68 = bool(require_lm68)
        self.max_mismatch = float(max_mismatch)
        name = getattr(det, "name", str(detector))
        self.source = name if hasattr(det, "landmarker") else f"{name}+{type(lmk).__name__}"
        self.align = AlignCrop(target5, int(crop_size), detector=det, landmarker=lmk,
                               compute_skin=compute_skin, face=face)

    @property
    def crop_size(self) -> int:
        return self.align.crop_size

    def __call__(self, sample: Sample) -> Sample:
        path = sample.meta.get("path", sample.sample_id or "<sample>")
        if not self.landmark_files:
            sample.lm5 = sample.lm68 = None
        lm5_from_file = sample.lm5 is not None and sample.lm68 is None
        lm68_from_file = sample.lm68 is not None
        out = self.align(sample)
        lm68 = out.lm68
        if lm68 is None or not bool(torch.isfinite(lm68).all()):
            if self.require_lm68:
                raise DataError(path, "no 68-point landmarks found (face not detected, or the 68-point "
                                "network failed on it)", "no_face")
            return out
        if lm5_from_file:
            err = lm5_mismatch(out.lm5, lm68)
            if err > self.max_mismatch:
                raise DataError(path, f"the detected face is not the one of the 5-point file (mean distance "
                                f"{err:.2f} inter-ocular distances)", "bad_landmarks")
        out.meta["lm68_source"] = "file" if lm68_from_file else self.source
        return out

    def __repr__(self) -> str:
        return f"PhotoAlignCrop(crop_size={self.crop_size}, source={self.source!r})"


__all__ = ["PhotoAlignCrop", "lm5_mismatch"]
