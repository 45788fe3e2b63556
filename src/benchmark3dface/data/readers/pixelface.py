"""Pixel-Face-style multi-view data (Lyu et al. 2020, used by DF-MVR): per subject and
expression three photos (left, front, right) taken by a fixed camera rig, and the 3D scan of
that sample as ground truth.

Layout read here (the public distribution's exact file names are not documented in the
sources available to this project -- the DF-MVR paper and REFERENCE.md state only "855
subjects, 7 or 23 expressions each, a 3D mesh per sample, three fixed camera angles"; see
datasets/pixelface.md)::

    root/<subject>/<expression>/left.<ext>    left view   (ext: jpg, jpeg, png, bmp, ...)
    root/<subject>/<expression>/front.<ext>   front view
    root/<subject>/<expression>/right.<ext>   right view
    root/<subject>/<expression>/mesh.obj      the scan (also mesh.ply / scan.obj / scan.ply), mm
    root/splits/train.txt, root/splits/test.txt   optional: one subject folder name per line

Without split files the subjects (sorted by name) are split 80 / 20 into train / test (DF-MVR
uses a 0.8 split). ``all``: every sample. One ``multiview`` Sample per (subject, expression):
``image`` ``(3, 3, H, W)`` in the order (left, front, right), ``scan_vertices`` ``(P, 3)`` mm,
``scan_triangles``, ``identity`` (subject index), ``meta``: subject, expression, view paths,
scan path. A missing view or scan is a :class:`MissingFileError` naming the file; views of
different sizes are a :class:`DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..sample import Sample
from .base import FaceDatasetReader
from .errors import DataError
from .imageio import IMAGE_EXTENSIONS, load_image, to_tensor
from .mesh import load_mesh
from .registry import register_reader

VIEWS = ("left", "front", "right")
SCAN_NAMES = ("mesh.obj", "mesh.ply", "scan.obj", "scan.ply")
TRAIN_FRACTION = 0.8


@dataclass
class _Item:
    subject: str
    subject_index: int
    expression: str
    folder: Path


def _find_view(folder: Path, view: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        for cand in (folder / f"{view}{ext}", folder / f"{view}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


@register_reader("pixelface")
class PixelFaceReader(FaceDatasetReader):
    """Pixel-Face-style triplets + scans (module docstring), split ``train`` | ``test`` | ``all``.

    Args:
        load_scan: attach the scan (False: images only, e.g. for training without 3D labels).
        scan_scale: multiply scan coordinates by this to get millimetres.
    """

    splits = ("train", "test", "all")
    source_hint = ("Pixel-Face (Lyu et al. 2020, arXiv:2008.12444) is distributed by its authors on request; "
                   "arrange it as root/<subject>/<expression>/{left,front,right}.jpg + mesh.obj "
                   "(datasets/pixelface.md)")

    def __init__(self, root, split: str = "test", image_size: int | None = None, strict: bool = True,
                 transform=None, skip: str = "next", load_scan: bool = True, scan_scale: float = 1.0) -> None:
        self.load_scan = bool(load_scan)
        self.scan_scale = float(scan_scale)
        super().__init__(root, split, image_size, strict, transform, skip)

    def _subjects(self) -> list[str]:
        subjects = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "splits")
        if self.split == "all":
            return subjects
        split_file = self.root / "splits" / f"{self.split}.txt"
        if split_file.is_file():
            names = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
            unknown = [n for n in names if n not in subjects]
            if unknown:
                raise DataError(split_file, f"{len(unknown)} subject(s) listed but not found in {self.root}: "
                                            f"{unknown[:5]}", "bad_split")
            return names
        n_train = int(round(TRAIN_FRACTION * len(subjects)))
        return subjects[:n_train] if self.split == "train" else subjects[n_train:]

    def _index(self) -> list[_Item]:
        all_subjects = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "splits")
        items = []
        for subject in self._subjects():
            sdir = self.root / subject
            for edir in sorted(p for p in sdir.iterdir() if p.is_dir()):
                items.append(_Item(subject, all_subjects.index(subject), edir.name, edir))
        if not items:
            raise self.missing(self.root, f"no <subject>/<expression>/ folders for split {self.split!r}")
        return items

    def _load(self, item: _Item, index: int) -> Sample:
        paths = []
        for view in VIEWS:
            p = _find_view(item.folder, view)
            if p is None:
                raise self.missing(item.folder / f"{view}.jpg", f"{view} view image of {item.subject}/{item.expression}")
            paths.append(p)
        imgs = [load_image(p) for p in paths]
        shapes = {im.shape for im in imgs}
        if len(shapes) != 1:
            raise DataError(item.folder, f"the three views differ in size: "
                                         f"{[f'{p.name} {im.shape[1]}x{im.shape[0]}' for p, im in zip(paths, imgs)]}",
                            "bad_value")
        image = torch.stack([to_tensor(im) for im in imgs])
        meta = {"subject": item.subject, "expression": item.expression, "views": list(VIEWS),
                "paths": [str(p) for p in paths], "path": str(paths[1])}
        sample = Sample(kind="multiview", sample_id=f"pixelface/{item.subject}/{item.expression}", image=image,
                        identity=item.subject_index, meta=meta)
        if self.load_scan:
            scan = next((item.folder / n for n in SCAN_NAMES if (item.folder / n).is_file()), None)
            if scan is None:
                raise self.missing(item.folder / SCAN_NAMES[0], f"scan of {item.subject}/{item.expression} "
                                                                 f"(one of {', '.join(SCAN_NAMES)})")
            v, f = load_mesh(scan)
            sample.scan_vertices = torch.from_numpy(np.asarray(v, np.float32) * self.scan_scale)
            sample.scan_triangles = None if f is None else torch.from_numpy(np.asarray(f, np.int64))
            meta["scan_path"] = str(scan)
        return sample


__all__ = ["PixelFaceReader", "VIEWS"]
