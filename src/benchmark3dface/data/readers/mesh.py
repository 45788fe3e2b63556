"""Scan / mesh loading for ground-truth scans (MICC Florence, NoW).

- ``.obj``: ``geometry.meshio.read_obj`` (polygons fan-triangulated, ``f v/vt/vn`` and negative
  indices supported). open3d's OBJ reader re-orders vertices in face-traversal order, so it is
  not used for OBJ: vertex order is kept as in the file.
- ``.ply``, ``.off``, ``.stl``, ``.gltf/.glb``: open3d (triangle meshes; files with vertices
  only are read as point clouds, ``triangles=None``).
- ``.wrl`` / ``.vrml`` (VRML 2.0 ``IndexedFaceSet``): a small parser in this module — it reads
  every ``Coordinate { point [...] }`` block and the ``coordIndex [...]`` that follows, polygons
  are fan-triangulated, several shapes are concatenated. ``DEF``/``USE`` re-use of coordinate
  nodes and ``Transform`` nodes are not supported (an explicit error is raised).

Units are whatever the file stores; readers multiply by their ``scan_scale`` and check that the
result has the extent of a face in millimetres (:func:`check_face_extent_mm`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import DataError, MissingFileError

MESH_EXTENSIONS = (".obj", ".ply", ".off", ".stl", ".gltf", ".glb", ".wrl", ".vrml")

_COORD_RE = re.compile(r"\bCoordinate\s*\{\s*point\s*\[([^\]]*)\]", re.S)
_INDEX_RE = re.compile(r"\bcoordIndex\s*\[([^\]]*)\]", re.S)


def _numbers(s: str, dtype) -> np.ndarray:
    s = s.replace(",", " ")
    return np.array(s.split(), dtype=dtype)


def _triangulate(idx: np.ndarray) -> np.ndarray:
    """VRML coordIndex (polygons separated by -1) -> (F, 3) fan triangulation."""
    if idx.size == 0:
        return np.zeros((0, 3), np.int64)
    if idx[-1] != -1:
        idx = np.append(idx, -1)
    ends = np.flatnonzero(idx == -1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lens = ends - starts
    if np.all(lens == 3):
        return idx[np.stack([starts, starts + 1, starts + 2], 1)]
    tris = []
    for s, n in zip(starts, lens):
        for k in range(1, n - 1):
            tris.append((idx[s], idx[s + k], idx[s + k + 1]))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices ``(P, 3)`` (file order) and fan-triangulated faces ``(Q, 3)`` (0-based) of an
    OBJ file, via :func:`benchmark3dface.geometry.meshio.read_obj`; errors become ``DataError``."""
    from ...geometry.meshio import MeshFormatError
    from ...geometry.meshio import read_obj as _read_obj

    path = Path(path)
    try:
        mesh = _read_obj(path)
    except (MeshFormatError, OSError) as e:
        raise DataError(path, f"malformed OBJ file ({e})", "unreadable_mesh") from None
    t = mesh.triangles
    return mesh.vertices, (t if len(t) else None)


def read_vrml(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices ``(P, 3)`` and triangles ``(Q, 3)`` (0-based) of a VRML 2.0 file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise DataError(path, f"cannot read VRML file ({e})", "unreadable_mesh") from None
    if not text.lstrip().startswith("#VRML"):
        raise DataError(path, "not a VRML file (missing '#VRML' header)", "unreadable_mesh")
    if re.search(r"\bUSE\b", text) or re.search(r"\bTransform\s*\{", text):
        raise DataError(path, "VRML files with DEF/USE re-use or Transform nodes are not "
                        "supported; convert the scan to .obj or .ply (e.g. with MeshLab)",
                        "unreadable_mesh")
    coords = _COORD_RE.findall(text)
    indices = _INDEX_RE.findall(text)
    if not coords:
        raise DataError(path, "no 'Coordinate { point [...] }' block found", "unreadable_mesh")
    verts, tris, offset = [], [], 0
    try:
        for k, block in enumerate(coords):
            v = _numbers(block, np.float64)
            if v.size % 3:
                raise DataError(path, f"point list {k} has {v.size} numbers (not a multiple of 3)",
                                "unreadable_mesh")
            v = v.reshape(-1, 3)
            verts.append(v)
            if k < len(indices):
                t = _triangulate(_numbers(indices[k], np.int64))
                if t.size and (t.min() < 0 or t.max() >= len(v)):
                    raise DataError(path, f"coordIndex {k} refers to vertices outside 0..{len(v) - 1}",
                                    "unreadable_mesh")
                tris.append(t + offset)
            offset += len(v)
    except ValueError as e:
        raise DataError(path, f"malformed VRML numbers ({e})", "unreadable_mesh") from None
    vertices = np.concatenate(verts, 0)
    triangles = np.concatenate(tris, 0) if tris else None
    return vertices, (triangles if triangles is not None and len(triangles) else None)


def load_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a scan: ``vertices (P, 3) float32`` and ``triangles (Q, 3) int64`` or None.

    Raises :class:`MissingFileError` / :class:`DataError` (``unreadable_mesh``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "scan file not found")
    suffix = path.suffix.lower()
    if suffix in (".wrl", ".vrml"):
        v, f = read_vrml(path)
    elif suffix == ".obj":
        v, f = read_obj(path)
    elif suffix in MESH_EXTENSIONS:
        import open3d as o3d

        mesh = o3d.io.read_triangle_mesh(str(path))
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.triangles, dtype=np.int64)
        if len(v) == 0:
            pcd = o3d.io.read_point_cloud(str(path))
            v = np.asarray(pcd.points, dtype=np.float64)
            f = np.zeros((0, 3), np.int64)
        f = f if len(f) else None
    else:
        raise DataError(path, f"unsupported scan format {suffix!r} (supported: "
                        f"{', '.join(MESH_EXTENSIONS)})", "unreadable_mesh")
    if len(v) == 0:
        raise DataError(path, "scan has no vertices (empty or unreadable file)", "unreadable_mesh")
    if not np.isfinite(v).all():
        raise DataError(path, "scan vertices contain NaN/inf", "non_finite")
    return v.astype(np.float32), f


def check_face_extent_mm(vertices: np.ndarray, path: str | Path,
                         lo: float = 60.0, hi: float = 800.0) -> float:
    """Bounding-box diagonal of a face scan after unit conversion; a face (or head) in
    millimetres spans roughly 100-500 mm. Raises ``bad_value`` outside ``[lo, hi]`` mm,
    which almost always means the scan is in other units (pass the reader's ``scan_scale``)."""
    diag = float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    if not lo <= diag <= hi:
        raise DataError(path, f"scan extent {diag:.4g} (bounding-box diagonal) is not that of a "
                        f"face in millimetres ({lo:g}-{hi:g}); pass scan_scale to convert its "
                        "units", "bad_value")
    return diag
