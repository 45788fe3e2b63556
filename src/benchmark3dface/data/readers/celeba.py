"""CelebA (Liu et al. 2015): 202,599 celebrity images with 5 landmarks and identity labels.

Layout (either flat or the official Google-Drive folders)::

    root/img_align_celeba/000001.jpg ...          (or root/Img/img_align_celeba/)
    root/list_landmarks_align_celeba.txt           (or root/Anno/...)
    root/list_eval_partition.txt                   (or root/Eval/...)
    root/identity_CelebA.txt                       (optional, or root/Anno/...)

Landmark list: line 1 = number of images, line 2 = the 10 column names (``lefteye_x lefteye_y
righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y``), then
``<file> x1 y1 ... x5 y5`` per image. CelebA's "left" is the viewer's left (smaller x), the same
order as Deng's 5 points. The integer coordinates are taken as 0-based pixel indices, i.e.
pixel centres: ``u = x + 0.5`` (:data:`CELEBA_OFFSET`). Partition: ``<file> 0|1|2`` =
train / val / test. Unlabelled for 3D (``labelled=False``). See datasets/celeba.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..sample import Sample
from .annotations import check_array
from .base import FaceDatasetReader
from .errors import DataError
from .imageio import load_image, to_tensor
from .registry import register_reader

#: Offset from CelebA's integer pixel indices to the framework's continuous coordinates.
CELEBA_OFFSET = 0.5
LANDMARK_COLUMNS = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
_SPLIT_IDS = {"train": "0", "val": "1", "test": "2"}
_VARIANTS = {"align": ("img_align_celeba", "list_landmarks_align_celeba.txt"),
             "wild": ("img_celeba", "list_landmarks_celeba.txt")}


@dataclass(frozen=True)
class _Item:
    image: Path
    lm5: tuple[float, ...] | None  # 10 numbers, or None when the line is malformed
    problem: str
    identity: int | None
    line: int


@register_reader("celeba")
class CelebAReader(FaceDatasetReader):
    """CelebA with its 5-point landmarks (``variant="align"``: 178x218 aligned crops, default;
    ``"wild"``: the original images).

    Sample fields: ``image``, ``lm5`` (5, 2) px (Deng's order), ``identity`` when
    ``identity_CelebA.txt`` is present, ``labelled=False``; ``meta``: ``path``, ``line``.
    """

    splits = ("train", "val", "test", "all")
    source_hint = ("CelebA comes from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
                   "(non-commercial research use); put img_align_celeba/, "
                   "list_landmarks_align_celeba.txt and list_eval_partition.txt in the root "
                   "folder (or keep the official Img/, Anno/, Eval/ sub-folders)")

    def __init__(self, root, split: str = "train", image_size: int | None = None,
                 strict: bool = True, transform=None, skip: str = "next",
                 variant: str = "align") -> None:
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {sorted(_VARIANTS)}, got {variant!r}")
        self.variant = variant
        super().__init__(root, split, image_size, strict, transform, skip)

    def _find(self, name: str, subdirs: tuple[str, ...], required: bool = True) -> Path | None:
        for d in ("",) + subdirs:
            p = self.root / d / name
            if p.exists():
                return p
        if required:
            raise self.missing(self.root / name, f"CelebA file {name}")
        return None

    def _read_lines(self, path: Path) -> list[str]:
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(path, f"cannot read ({e})", "unreadable_annotation") from None

    def _index(self) -> list[_Item]:
        img_name, lm_name = _VARIANTS[self.variant]
        img_dir = self._find(img_name, ("Img",))
        lm_path = self._find(lm_name, ("Anno",))
        lines = self._read_lines(lm_path)
        if len(lines) < 2 or not lines[0].strip().isdigit():
            raise DataError(lm_path, "first line must be the number of images", "unreadable_annotation")
        if tuple(lines[1].split()) != LANDMARK_COLUMNS:
            raise DataError(lm_path, f"second line must be the column names {' '.join(LANDMARK_COLUMNS)}",
                            "unreadable_annotation")
        landmarks: dict[str, tuple[tuple[float, ...] | None, str, int]] = {}
        for k, ln in enumerate(lines[2:], start=3):
            parts = ln.split()
            if not parts:
                continue
            try:
                vals = tuple(float(v) for v in parts[1:])
                ok = len(vals) == 10
                problem = "" if ok else f"line {k} has {len(vals)} numbers, expected 10"
            except ValueError:
                vals, ok, problem = (), False, f"line {k} is not numeric"
            landmarks[parts[0]] = (vals if ok else None, problem, k)
        if self.split == "all":
            names = sorted(landmarks)
        else:
            part_path = self._find("list_eval_partition.txt", ("Eval",))
            want = _SPLIT_IDS[self.split]
            names = [p[0] for p in (ln.split() for ln in self._read_lines(part_path))
                     if len(p) == 2 and p[1] == want]
        ids: dict[str, int] = {}
        id_path = self._find("identity_CelebA.txt", ("Anno",), required=False)
        if id_path is not None:
            for ln in self._read_lines(id_path):
                p = ln.split()
                if len(p) == 2 and p[1].isdigit():
                    ids[p[0]] = int(p[1])
        items = []
        for name in names:
            vals, problem, line = landmarks.get(name, (None, f"no entry for {name} in {lm_name}", 0))
            items.append(_Item(img_dir / name, vals, problem, ids.get(name), line))
        self.landmark_path = lm_path
        return items

    def _load(self, item: _Item, index: int) -> Sample:
        if item.lm5 is None:
            raise DataError(self.landmark_path, item.problem, "unreadable_annotation")
        pts = check_array(np.reshape(item.lm5, (5, 2)), self.landmark_path,
                          f"landmarks of {item.image.name}", [(5, 2)])
        img = load_image(item.image)
        return Sample(
            kind="single",
            sample_id=f"celeba/{item.image.stem}",
            image=to_tensor(img),
            lm5=torch.from_numpy(pts).float() + CELEBA_OFFSET,
            identity=item.identity,
            labelled=False,
            meta={"path": str(item.image), "annotation_path": str(self.landmark_path),
                  "line": item.line},
        )
