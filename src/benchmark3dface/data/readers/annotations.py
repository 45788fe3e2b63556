"""Annotation file loaders and landmark conventions shared by the readers.

Coordinates returned by the parsers are exactly what the file stores; the readers convert them
to the framework's image convention (docs/conventions.md: continuous pixels, top-left origin,
pixel centre of (row i, col j) at (j + 0.5, i + 0.5)). Conversions used by the readers:

- 1-based MATLAB coordinates (pixel centres at integers 1..W, e.g. 3DDFA / 300W-LP / AFLW2000-3D
  and iBUG ``.pts`` files): ``u = x - 0.5``, ``v = y - 0.5``
  (:data:`ONE_BASED_TO_CONTINUOUS`).
- Continuous coordinates (e.g. Deng's 5-point ``.txt`` files, MTCNN output): unchanged.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import DataError, MissingFileError

#: Offset added to 1-based MATLAB pixel coordinates to get the framework convention.
ONE_BASED_TO_CONTINUOUS = -0.5

# iBUG-68 left/right pairs (0-based) used to mirror landmarks with an image flip.
_IBUG68_PAIRS = (
    [(i, 16 - i) for i in range(8)]  # jaw
    + [(17 + i, 26 - i) for i in range(5)]  # brows
    + [(31, 35), (32, 34)]  # nostrils
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer mouth
    + [(60, 64), (61, 63), (65, 67)]  # inner mouth
)


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(68))
    for a, b in _IBUG68_PAIRS:
        perm[a], perm[b] = b, a
    return tuple(perm)


#: ``lm_flipped = mirror(lm)[IBUG68_FLIP]``: index i of a mirrored face takes point IBUG68_FLIP[i].
IBUG68_FLIP: tuple[int, ...] = _flip_permutation()

#: Yaw bin edges in degrees of |yaw| (AFLW2000-3D protocol, 3DDFA): [0,30], (30,60], (60,inf).
YAW_BIN_EDGES_DEG = (30.0, 60.0)
YAW_BIN_NAMES = ("[0,30]", "(30,60]", "(60,90]")
_YAW_EPS_DEG = 1e-4


def lm5_from_lm68(lm68: Tensor) -> Tensor:
    """Deng's 5 points from iBUG-68 points: eye centres mean(36,39), mean(42,45), nose tip 30,
    mouth corners 48, 54 (viewer's left first). Works for any trailing coordinate size:
    ``(..., 68, D) -> (..., 5, D)``."""
    if lm68.shape[-2] != 68:
        raise ValueError(f"expected (..., 68, D) landmarks, got {tuple(lm68.shape)}")
    return torch.stack(
        [
            (lm68[..., 36, :] + lm68[..., 39, :]) / 2,
            (lm68[..., 42, :] + lm68[..., 45, :]) / 2,
            lm68[..., 30, :],
            lm68[..., 48, :],
            lm68[..., 54, :],
        ],
        dim=-2,
    )


def mirror_lm68(lm68: Tensor, width: float) -> Tensor:
    """Landmarks of the horizontally flipped image (framework coordinates: ``u' = W - u``), with
    the iBUG-68 left/right semantic swap. ``(..., 68, D)``, D >= 2; extra coordinates (depth)
    are kept."""
    out = lm68[..., list(IBUG68_FLIP), :].clone()
    out[..., 0] = width - out[..., 0]
    return out


def yaw_bin(yaw_rad: float | Tensor) -> int | Tensor:
    """AFLW2000-3D yaw bin of ``|yaw|``: 0 for [0, 30] deg, 1 for (30, 60], 2 above 60
    (profiles beyond 90 degrees fall in bin 2, as in the 3DDFA benchmark). Edges are inclusive
    up to a 1e-4 degree tolerance (radian round-off)."""
    lo, hi = (e + _YAW_EPS_DEG for e in YAW_BIN_EDGES_DEG)
    if isinstance(yaw_rad, Tensor):
        deg = yaw_rad.double().abs() * (180.0 / math.pi)
        return (deg > lo).long() + (deg > hi).long()
    deg = abs(float(yaw_rad)) * 180.0 / math.pi
    return int(deg > lo) + int(deg > hi)


# ----------------------------------------------------------------------------------- checks
def check_array(a: Any, path: str | Path, name: str, shapes: Sequence[tuple[int | None, ...]],
                finite: bool = True) -> np.ndarray:
    """Validate an annotation array: numeric, one of ``shapes`` (None = any size), finite.

    Returns it as float64. Raises :class:`DataError` (``bad_shape`` / ``non_finite``)."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(path, f"'{name}' is not numeric (got {type(a).__name__})", "bad_value") from None
    if not any(len(s) == arr.ndim and all(e is None or e == d for e, d in zip(s, arr.shape))
               for s in shapes):
        want = " or ".join(str(tuple("*" if e is None else e for e in s)) for s in shapes)
        raise DataError(path, f"'{name}' has shape {arr.shape}, expected {want}", "bad_shape")
    if finite and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DataError(path, f"'{name}' contains {bad} NaN/inf value(s)", "non_finite")
    return arr


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """``"Type: first line of the message"``, shortened to ``limit`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_mat(path: str | Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """Read a MATLAB v4 / v5 / v7 ``.mat`` file with scipy; check that ``required`` keys are
    present.

    Every failure is a :class:`DataError` naming the file (``reason="unreadable_annotation"``,
    or ``"missing_key"``): an empty file, a file that is not a MAT file at all (scipy's
    ``MatReadError`` / "Unknown mat file type"), a truncated or corrupt one, and MATLAB v7.3
    (HDF5) files, which scipy cannot read. A missing file is a :class:`MissingFileError`.
    """
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "annotation file not found")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(path, f"cannot read .mat file ({_one_line(e)})", "unreadable_annotation") from None
    if size == 0:
        raise DataError(path, "empty file (0 bytes), not a MATLAB .mat file", "unreadable_annotation")
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise DataError(path, "MATLAB v7.3 (HDF5) .mat files are not supported; re-save with "
                        "-v7", "unreadable_annotation") from None
    except (MatReadError, ValueError) as e:
        if "unknown mat file type" in str(e).lower():
            problem = "not a MATLAB .mat file (unknown header; wrong file or extension?)"
        else:
            problem = f"not a readable MATLAB .mat file, truncated or corrupt ({_one_line(e)})"
        raise DataError(path, problem, "unreadable_annotation") from None
    except Exception as e:  # noqa: BLE001 - scipy raises many types on corrupt input (OSError, zlib.error ...)
        raise DataError(path, f"cannot read .mat file, truncated or corrupt ({_one_line(e)})",
                        "unreadable_annotation") from None
    keys = sorted(k for k in mat if not k.startswith("__"))
    missing = [k for k in required if k not in mat]
    if missing:
        raise DataError(path, f"missing key(s) {missing}; keys present: {keys}", "missing_key")
    return mat


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise MissingFileError(path, "annotation file not found")
    try:
        return path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read text annotation ({e})", "unreadable_annotation") from None


def read_pts(path: str | Path) -> np.ndarray:
    """iBUG ``.pts``: ``version: 1`` / ``n_points: N`` / ``{`` / N lines ``x y`` / ``}``.

    Returns ``(N, 2)`` as stored (1-based MATLAB coordinates in 300-W)."""
    path = Path(path)
    lines = [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]
    try:
        n_line = next(ln for ln in lines if ln.lower().startswith("n_points"))
        n = int(n_line.split(":", 1)[1])
        start, end = lines.index("{"), lines.index("}")
        rows = [[float(v) for v in ln.replace(",", " ").split()] for ln in lines[start + 1:end]]
    except (StopIteration, ValueError, IndexError):
        raise DataError(path, "malformed .pts file (expected 'n_points: N', '{', N lines "
                        "'x y', '}')", "unreadable_annotation") from None
    if len(rows) != n:
        raise DataError(path, f"n_points says {n} but {len(rows)} point lines follow", "bad_shape")
    return check_array(rows, path, "points", [(n, 2)])


def read_points_txt(path: str | Path, n_points: Sequence[int] | None = None,
                    dims: int = 2) -> np.ndarray:
    """Whitespace- or comma-separated points, one per line (``x y`` or ``x y z``).

    ``n_points`` restricts the accepted point counts (e.g. ``(5, 68)``)."""
    path = Path(path)
    rows = []
    for ln in _read_text(path).splitlines():
        ln = ln.split("#", 1)[0].strip()
        if not ln:
            continue
        try:
            rows.append([float(v) for v in ln.replace(",", " ").split()])
        except ValueError:
            raise DataError(path, f"non-numeric line {ln[:40]!r}", "unreadable_annotation") from None
    if not rows or any(len(r) != dims for r in rows):
        raise DataError(path, f"expected lines of {dims} numbers, got "
                        f"{sorted({len(r) for r in rows}) or 'no lines'}", "bad_shape")
    shapes = [(n, dims) for n in n_points] if n_points else [(None, dims)]
    return check_array(rows, path, "points", shapes)


def read_points_npy(path: str | Path, shapes: Sequence[tuple[int | None, ...]]) -> np.ndarray:
    """A numeric ``.npy`` array (pickles refused)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "annotation file not found")
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(path, f"cannot read .npy ({e})", "unreadable_annotation") from None
    return check_array(a, path, "points", shapes)


def read_picked_points(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """MeshLab PickedPoints ``.pp`` XML: ``<point x= y= z= name= active=/>`` elements.

    Returns ``(N, 3)`` coordinates in file order and the point names."""
    path = Path(path)
    text = _read_text(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise DataError(path, f"malformed PickedPoints XML ({e})", "unreadable_annotation") from None
    pts, names = [], []
    for el in root.iter("point"):
        try:
            pts.append([float(el.attrib[k]) for k in ("x", "y", "z")])
        except (KeyError, ValueError):
            raise DataError(path, f"<point> without numeric x/y/z: {el.attrib}", "unreadable_annotation") from None
        names.append(el.attrib.get("name", str(len(names))))
    if not pts:
        raise DataError(path, "no <point> elements", "bad_shape")
    return check_array(pts, path, "points", [(None, 3)]), names


def read_landmarks3d(path: str | Path, n: int) -> np.ndarray:
    """``(n, 3)`` 3D landmarks from ``.pp`` (MeshLab), ``.txt`` or ``.npy`` (by extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pp":
        pts, _ = read_picked_points(path)
        return check_array(pts, path, "points", [(n, 3)])
    if suffix == ".npy":
        return read_points_npy(path, [(n, 3)])
    if suffix == ".txt":
        return read_points_txt(path, n_points=(n,), dims=3)
    raise DataError(path, f"unsupported landmark file type {suffix!r} (use .pp, .txt or .npy)",
                    "unreadable_annotation")
