"""A folder of face photos (unlabelled), with optional landmark files next to each image.

For ``photo.jpg`` the reader looks for:

- ``photo.pts``: iBUG format (``version: 1``, ``n_points: 68``, ``{``, 68 lines ``x y``, ``}``),
  1-based MATLAB coordinates as in 300-W -> ``u = x - 0.5`` (``pts_one_based=True``);
- ``photo.txt``: 5 or 68 lines ``x y`` (Deng's 5-point detection files), taken as continuous
  framework coordinates (no shift).

68 points give ``lm68`` and the derived ``lm5``; 5 points give ``lm5``. Images are found
recursively (hidden folders skipped), sorted by path. See datasets/image_folder.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..sample import Sample
from .annotations import ONE_BASED_TO_CONTINUOUS, lm5_from_lm68, read_points_txt, read_pts
from .base import FaceDatasetReader
from .errors import DataError
from .imageio import list_images, load_image, to_tensor
from .registry import register_reader


@dataclass(frozen=True)
class _Item:
    image: Path


@register_reader("image_folder")
class ImageFolderReader(FaceDatasetReader):
    """Unlabelled photos (``labelled=False``), split ``"all"``.

    Args:
        require_landmarks: a photo without a ``.pts``/``.txt`` file is a bad sample
            (``missing_file``); otherwise it is returned without landmarks.
        pts_one_based: shift ``.pts`` coordinates by -0.5 (1-based MATLAB convention).
        exif_transpose: apply the EXIF orientation (phone photos). Landmark files must then
            refer to the upright image.
        recursive: search sub-folders.
    """

    splits = ("all",)
    source_hint = "a folder of your own face photos (jpg/png/...), optionally with NAME.pts or NAME.txt landmarks"

    def __init__(self, root, split: str = "all", image_size: int | None = None,
                 strict: bool = True, transform=None, skip: str = "next",
                 require_landmarks: bool = False, pts_one_based: bool = True,
                 exif_transpose: bool = True, recursive: bool = True) -> None:
        self.require_landmarks = require_landmarks
        self.pts_one_based = pts_one_based
        self.exif_transpose = exif_transpose
        self.recursive = recursive
        super().__init__(root, split, image_size, strict, transform, skip)

    def _index(self) -> list[_Item]:
        images = list_images(self.root, self.recursive)
        if not images:
            raise self.missing(self.root / "*.jpg", "images (jpg/jpeg/png/bmp/webp/tif)")
        return [_Item(p) for p in images]

    def _landmarks(self, image: Path) -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
        pts, txt = image.with_suffix(".pts"), image.with_suffix(".txt")
        if pts.is_file():
            a = torch.from_numpy(read_pts(pts)).float()
            if a.shape[0] != 68:
                raise DataError(pts, f"expected 68 points, got {a.shape[0]}", "bad_shape")
            if self.pts_one_based:
                a = a + ONE_BASED_TO_CONTINUOUS
            return a, lm5_from_lm68(a), str(pts)
        if txt.is_file():
            a = torch.from_numpy(read_points_txt(txt, n_points=(5, 68))).float()
            if a.shape[0] == 68:
                return a, lm5_from_lm68(a), str(txt)
            return None, a, str(txt)
        if self.require_landmarks:
            raise DataError(image.with_suffix(".txt"), "landmark file not found (NAME.pts with 68 "
                            "points or NAME.txt with 5 or 68 'x y' lines)", "missing_file")
        return None, None, None

    def _load(self, item: _Item, index: int) -> Sample:
        lm68, lm5, lm_path = self._landmarks(item.image)
        img = load_image(item.image, exif_transpose=self.exif_transpose)
        rel = item.image.relative_to(self.root).with_suffix("")
        meta = {"path": str(item.image)}
        if lm_path:
            meta["annotation_path"] = lm_path
        return Sample(kind="single", sample_id=f"image_folder/{rel.as_posix()}", image=to_tensor(img),
                      lm68=lm68, lm5=lm5, labelled=False, meta=meta)
