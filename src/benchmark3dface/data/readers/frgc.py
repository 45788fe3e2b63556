"""FRGC-style range images (Face Recognition Grand Challenge v2, the 3D set Richardson et al.
score their depth maps on): a structured-light range scan per record, the texture image taken
with it, and landmarks.

``.abs`` format (ASCII, optionally gzip-compressed ``.abs.gz``; the FRGC distribution's range
format, as parsed by e.g. PyVision's ``RangeImage`` (D. S. Bolme, 2009))::

    480 rows
    640 columns
    pixels (flag X Y Z):
    <rows*cols flags: 1 = valid, 0 = no measurement>
    <rows*cols X values>
    <rows*cols Y values>
    <rows*cols Z values>

in row-major order, millimetres in the scanner frame (the Minolta Vivid 910 looks along -Z, so
Z is negative and grows toward the scanner); invalid pixels hold -999999. See datasets/frgc.md.

Layout::

    root/<name>.abs | <name>.abs.gz      range image (required)
    root/<name>.ppm | .png | .jpg        texture, pixel-aligned with the range grid (optional)
    root/<name>.lm.txt                   landmarks: one "u v" per line (range-grid pixels,
                                         top-left origin), 68 iBUG points (or 5); optional

Sample fields: ``depth`` (H, W) mm = ``-Z`` (distance along the viewing axis, smaller is
nearer, NaN where the flag is 0), ``scan_vertices`` (P, 3) the valid XYZ points (mm), ``image``
(the texture, or the depth rendered as a gray image when there is none, ``meta["image"] =
"depth"``), ``lm68`` / ``lm5`` when a landmark file is there.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..sample import Sample
from .annotations import lm5_from_lm68
from .base import FaceDatasetReader
from .errors import DataError
from .imageio import load_image, to_tensor
from .registry import register_reader

INVALID = -999999.0
HEADER3 = "pixels (flag x y z):"
TEXTURE_EXT = (".ppm", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class _Item:
    name: str
    abs_path: Path


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.name.lower().endswith(".gz") else open(path)


def read_abs(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(valid (H, W) bool, xyz (H, W, 3) float32 mm)`` of an ``.abs`` / ``.abs.gz`` file;
    invalid pixels are NaN. Raises :class:`DataError` (one line: file, problem, counts)."""
    path = Path(path)
    try:
        with _open_text(path) as f:
            head = [f.readline() for _ in range(3)]
            rest = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable range file ({type(e).__name__}: {e})", "unreadable_annotation") from None
    try:
        rows = int(head[0].split()[0]) if head[0].split()[1:2] == ["rows"] else None
        cols = int(head[1].split()[0]) if head[1].split()[1:2] == ["columns"] else None
    except (ValueError, IndexError):
        rows = cols = None
    if rows is None or cols is None or head[2].strip().lower() != HEADER3:
        raise DataError(path, "not an FRGC .abs file: expected the header '<R> rows', '<C> columns', "
                        "'pixels (flag X Y Z):'", "unreadable_annotation")
    if rows <= 0 or cols <= 0:
        raise DataError(path, f"bad grid size {rows} x {cols}", "bad_shape")
    try:
        values = np.array(rest.split(), dtype=np.float64)
    except ValueError:
        raise DataError(path, "non-numeric value in the pixel data", "unreadable_annotation") from None
    n = rows * cols
    if values.size != 4 * n:
        raise DataError(path, f"{values.size} values for a {rows} x {cols} grid (expected 4 x {n}: flag, X, Y, Z)",
                        "bad_shape")
    flag, x, y, z = values.reshape(4, rows, cols)
    valid = flag != 0
    xyz = np.stack([x, y, z], -1)
    bad = valid & (~np.isfinite(xyz).all(-1) | (xyz <= INVALID + 1).any(-1))
    if bad.any():
        raise DataError(path, f"{int(bad.sum())} pixels flagged valid hold the invalid value or a non-finite "
                        "coordinate", "non_finite")
    xyz[~valid] = np.nan
    return valid, xyz.astype(np.float32)


def read_landmarks2d(path: Path) -> np.ndarray:
    """``(K, 2)`` from a text file of "u v" lines (K = 68 or 5)."""
    try:
        a = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(path, f"unreadable landmark file ({e})", "unreadable_annotation") from None
    if a.shape not in ((68, 2), (5, 2)):
        raise DataError(path, f"{a.shape[0]} landmarks of {a.shape[1]} values; expected 68 or 5 lines of 'u v'",
                        "bad_landmarks")
    if not np.isfinite(a).all():
        raise DataError(path, f"{int((~np.isfinite(a)).any(1).sum())} non-finite landmarks", "non_finite")
    return a.astype(np.float32)


@register_reader("frgc")
class FRGCReader(FaceDatasetReader):
    """A folder of FRGC-style ``.abs`` range images with optional textures and landmarks."""

    splits = ("all",)
    source_hint = ("FRGC v2 is distributed by the University of Notre Dame / NIST under a licence "
                   "agreement (https://cvrl.nd.edu/projects/data/); put the .abs(.gz) range files, "
                   "their textures and <name>.lm.txt landmark files in one folder (datasets/frgc.md)")

    def _index(self) -> list[_Item]:
        files = sorted(p for p in self.root.iterdir() if p.is_file() and
                       (p.name.lower().endswith(".abs") or p.name.lower().endswith(".abs.gz")))
        if not files:
            raise self.missing(self.root / "<name>.abs", "FRGC range files (.abs / .abs.gz)")
        return [_Item(p.name[: -len(".abs.gz")] if p.name.lower().endswith(".gz") else p.stem, p) for p in files]

    def _load(self, item: _Item, index: int) -> Sample:
        valid, xyz = read_abs(item.abs_path)
        if not valid.any():
            raise DataError(item.abs_path, "no valid pixel in the range image", "bad_value")
        depth = torch.from_numpy(-xyz[..., 2])
        meta = {"path": str(item.abs_path), "valid_pixels": int(valid.sum())}
        sample = Sample(kind="single", sample_id=f"frgc/{item.name}", labelled=True, meta=meta,
                        depth=depth, scan_vertices=torch.from_numpy(xyz[valid]))
        h, w = valid.shape
        tex = next((item.abs_path.with_name(item.name + e) for e in TEXTURE_EXT
                    if item.abs_path.with_name(item.name + e).is_file()), None)
        if tex is not None:
            img = load_image(tex)
            if img.shape[:2] != (h, w):
                raise DataError(tex, f"texture is {img.shape[1]} x {img.shape[0]}, the range grid {w} x {h}", "bad_shape")
            sample.image = to_tensor(img)
            meta["image"] = str(tex)
        else:
            d = depth.clone()
            ok = torch.from_numpy(valid)
            lo, hi = d[ok].min(), d[ok].max()
            g = torch.where(ok, 1.0 - (d - lo) / (hi - lo).clamp_min(1e-6), torch.zeros_like(d))
            sample.image = g[None].expand(3, h, w).contiguous()
            meta["image"] = "depth"
        lm_path = item.abs_path.with_name(item.name + ".lm.txt")
        if lm_path.is_file():
            lm = torch.from_numpy(read_landmarks2d(lm_path))
            if len(lm) == 68:
                sample.lm68 = lm
                sample.lm5 = lm5_from_lm68(lm)
            else:
                sample.lm5 = lm
            meta["landmark_path"] = str(lm_path)
        return sample
