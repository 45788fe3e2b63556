"""Mesh files: Wavefront OBJ (read / write) and binary PLY (write).

Units are whatever the caller's vertices are in (the framework's meshes are in millimetres,
model or world frame); nothing is rescaled here. Triangles are 0-based in memory and 1-based in
OBJ files; colours are floats in [0, 1] in memory (``v x y z r g b`` in OBJ, ``uchar`` 0..255 in
PLY).

``read_obj`` understands the common OBJ subset used by scanners and modelling tools: ``v`` (with
optional per-vertex colours), ``vt``, ``vn`` and ``f`` with ``v``, ``v/vt``, ``v//vn`` and
``v/vt/vn`` references, negative (relative) indices, polygons with more than three corners (split
into a fan ``(p0, pi, pi+1)``, which keeps the polygon's winding) and ``#`` comments; other
statements (``o``, ``g``, ``s``, ``usemtl``, ``mtllib``, ``l`` ...) are ignored. Malformed input
raises ``MeshFormatError`` naming the file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike


class MeshFormatError(ValueError):
    """A mesh file that cannot be parsed (the message names the file and, for OBJ, the line)."""


@dataclass
class ObjMesh:
    """Contents of an OBJ file.

    vertices: (N, 3) float64; triangles: (F, 3) int64, 0-based, fan-split polygons;
    colors: (N, 3) float64 in the file's range (usually [0, 1]) or None when no ``v`` line
    has colours; uv: (T, 2) float64 texture coordinates or None; triangle_uv: (F, 3) int64
    0-based ``vt`` indices per triangle corner (-1 where a corner has none) or None;
    normals: (M, 3) float64 or None; polygon: (F,) int64 index of the source ``f`` line
    (0-based count of faces) of each triangle; polygon_sizes: (P,) corners per source face.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    triangle_uv: np.ndarray | None = None
    normals: np.ndarray | None = None
    polygon: np.ndarray | None = None
    polygon_sizes: np.ndarray | None = None

    def __iter__(self):
        """``vertices, triangles = read_obj(path)`` unpacks the essentials."""
        return iter((self.vertices, self.triangles))


def _as_numpy(a: Any, dtype) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _check_mesh(path: Path, vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"{path}: vertices must be (N, 3), got {vertices.shape}")
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ValueError(f"{path}: triangles must be (F, 3), got {triangles.shape}")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(vertices)):
        raise ValueError(f"{path}: triangle indices outside [0, {len(vertices)})")
    if not np.isfinite(vertices).all():
        raise ValueError(f"{path}: vertices contain NaN or infinite values")
    if colors is not None and colors.shape != vertices.shape:
        raise ValueError(f"{path}: colors must be (N, 3) like the vertices {vertices.shape}, got {colors.shape}")


# ----------------------------------------------------------------------------------- writing
def write_obj(path: PathLike, vertices, triangles, colors=None, precision: int = 6) -> Path:
    """Write a triangle mesh as OBJ.

    Args:
        path: output file (parent folders are created).
        vertices: (N, 3) positions (any unit; written as given).
        triangles: (F, 3) 0-based vertex indices (written 1-based).
        colors: optional (N, 3) vertex colours in [0, 1], written as ``v x y z r g b``.
        precision: decimals written per coordinate.
    Returns:
        The path written.
    """
    path = Path(path)
    v = _as_numpy(vertices, np.float64)
    f = _as_numpy(triangles, np.int64)
    c = None if colors is None else np.clip(_as_numpy(colors, np.float64), 0.0, 1.0)
    _check_mesh(path, v, f, c)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = f"%.{precision}f"
    data = v if c is None else np.concatenate([v, c], 1)
    vfmt = "v " + " ".join([fmt] * data.shape[1])
    with open(path, "w", encoding="ascii") as fh:
        fh.write("# benchmark3dface mesh\n")
        fh.write(_rows(vfmt, data))
        fh.write(_rows("f %d %d %d", f + 1))
    return path


def _rows(fmt: str, data: np.ndarray) -> str:
    if len(data) == 0:
        return ""
    return "\n".join([fmt] * len(data)) % tuple(data.ravel().tolist()) + "\n"


def write_ply(path: PathLike, vertices, triangles, colors=None) -> Path:
    """Write a binary little-endian PLY: float32 ``x y z``, optional ``uchar`` ``red green
    blue`` (from colours in [0, 1]) and ``vertex_indices`` as ``list uchar int``.

    Args and return as ``write_obj``.
    """
    path = Path(path)
    v = _as_numpy(vertices, np.float64)
    f = _as_numpy(triangles, np.int64)
    c = None if colors is None else _as_numpy(colors, np.float64)
    _check_mesh(path, v, f, c)
    path.parent.mkdir(parents=True, exist_ok=True)
    vfields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if c is not None:
        vfields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(len(v), dtype=vfields)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    if c is not None:
        c8 = np.round(np.clip(c, 0.0, 1.0) * 255.0).astype(np.uint8)
        vert["red"], vert["green"], vert["blue"] = c8[:, 0], c8[:, 1], c8[:, 2]
    face = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"] = 3
    face["i"] = f
    header = ["ply", "format binary_little_endian 1.0", "comment benchmark3dface mesh",
              f"element vertex {len(v)}", "property float x", "property float y", "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        fh.write(face.tobytes())
    return path


def write_mesh(path: PathLike, vertices, triangles, colors=None) -> Path:
    """Write OBJ or PLY by the file suffix (``.obj`` / ``.ply``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".obj":
        return write_obj(path, vertices, triangles, colors)
    if suffix == ".ply":
        return write_ply(path, vertices, triangles, colors)
    raise ValueError(f"{path}: unsupported mesh format {suffix!r}; use .obj or .ply")


# ----------------------------------------------------------------------------------- reading
def _floats(path: Path, lineno: int, tokens: list[str], need: int, what: str) -> list[float]:
    if len(tokens) < need:
        raise MeshFormatError(f"{path}:{lineno}: '{what}' needs at least {need} numbers, got {len(tokens)}")
    try:
        vals = [float(t) for t in tokens]
    except ValueError:
        raise MeshFormatError(f"{path}:{lineno}: '{what}' has a non-numeric value in {' '.join(tokens)!r}") from None
    if not all(np.isfinite(vals)):
        raise MeshFormatError(f"{path}:{lineno}: '{what}' has a NaN or infinite value")
    return vals


def _resolve(path: Path, lineno: int, ref: str, count: int, kind: str) -> int:
    """One OBJ index (1-based or negative-relative) -> 0-based."""
    try:
        i = int(ref)
    except ValueError:
        raise MeshFormatError(f"{path}:{lineno}: bad {kind} index {ref!r} in a face") from None
    if i == 0:
        raise MeshFormatError(f"{path}:{lineno}: {kind} index 0 is invalid (OBJ indices start at 1)")
    j = i - 1 if i > 0 else count + i
    if j < 0:
        raise MeshFormatError(f"{path}:{lineno}: relative {kind} index {i} points before the first {kind}")
    return j


def read_obj(path: PathLike) -> ObjMesh:
    """Read an OBJ file (see the module docstring for the supported subset).

    Raises:
        FileNotFoundError: the file does not exist.
        MeshFormatError: malformed content; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    verts: list[list[float]] = []
    cols: list[list[float] | None] = []
    uvs: list[list[float]] = []
    norms: list[list[float]] = []
    tri_v: list[tuple[int, int, int]] = []
    tri_t: list[tuple[int, int, int]] = []
    tri_line: list[int] = []
    tri_poly: list[int] = []
    poly_sizes: list[int] = []
    any_uv_ref = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            key, args = tokens[0], tokens[1:]
            if key == "v":
                vals = _floats(path, lineno, args, 3, "v")
                verts.append(vals[:3])
                cols.append(vals[3:6] if len(vals) >= 6 else None)
            elif key == "vt":
                uvs.append(_floats(path, lineno, args, 1, "vt")[:2] + ([0.0] if len(args) == 1 else []))
            elif key == "vn":
                norms.append(_floats(path, lineno, args, 3, "vn")[:3])
            elif key == "f":
                if len(args) < 3:
                    raise MeshFormatError(f"{path}:{lineno}: a face needs at least 3 vertices, got {len(args)}")
                vi, ti = [], []
                for ref in args:
                    parts = ref.split("/")
                    if len(parts) > 3 or parts[0] == "":
                        raise MeshFormatError(f"{path}:{lineno}: bad face vertex {ref!r}")
                    vi.append(_resolve(path, lineno, parts[0], len(verts), "vertex"))
                    if len(parts) > 1 and parts[1] != "":
                        ti.append(_resolve(path, lineno, parts[1], len(uvs), "texture"))
                        any_uv_ref = True
                    else:
                        ti.append(-1)
                pid = len(poly_sizes)
                poly_sizes.append(len(vi))
                for k in range(1, len(vi) - 1):
                    tri_v.append((vi[0], vi[k], vi[k + 1]))
                    tri_t.append((ti[0], ti[k], ti[k + 1]))
                    tri_line.append(lineno)
                    tri_poly.append(pid)
    vertices = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    triangles = np.asarray(tri_v, dtype=np.int64).reshape(-1, 3)
    bad = np.nonzero((triangles >= len(vertices)).any(1))[0]
    if len(bad):
        raise MeshFormatError(f"{path}:{tri_line[bad[0]]}: face refers to vertex {int(triangles[bad[0]].max()) + 1}, "
                              f"but the file has {len(vertices)} vertices")
    triangle_uv = None
    if any_uv_ref:
        triangle_uv = np.asarray(tri_t, dtype=np.int64).reshape(-1, 3)
        badt = np.nonzero((triangle_uv >= len(uvs)).any(1))[0]
        if len(badt):
            raise MeshFormatError(f"{path}:{tri_line[badt[0]]}: face refers to texture coordinate "
                                  f"{int(triangle_uv[badt[0]].max()) + 1}, but the file has {len(uvs)}")
    colors = None
    if any(c is not None for c in cols):
        if any(c is None for c in cols):
            first = next(i for i, c in enumerate(cols) if c is None)
            raise MeshFormatError(f"{path}: some 'v' lines have colours and others (vertex {first + 1}) do not")
        colors = np.asarray(cols, dtype=np.float64)
    return ObjMesh(
        vertices=vertices,
        triangles=triangles,
        colors=colors,
        uv=np.asarray(uvs, dtype=np.float64).reshape(-1, 2) if uvs else None,
        triangle_uv=triangle_uv,
        normals=np.asarray(norms, dtype=np.float64).reshape(-1, 3) if norms else None,
        polygon=np.asarray(tri_poly, dtype=np.int64),
        polygon_sizes=np.asarray(poly_sizes, dtype=np.int64),
    )


def read_obj_vertices(path: PathLike) -> np.ndarray:
    """Only the ``v`` positions of an OBJ file, (N, 3) float64 -- a fast path for morph targets
    that share a topology (e.g. ICT-FaceKit's identity / expression OBJs). Malformed vertex lines
    fall back to ``read_obj`` for an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    with open(path, encoding="utf-8", errors="replace") as fh:
        rows = [line[2:] for line in fh if line.startswith("v ")]
    if not rows:
        return np.zeros((0, 3), np.float64)
    try:
        v = np.loadtxt(rows, dtype=np.float64, usecols=(0, 1, 2), ndmin=2, comments="#")
    except ValueError:
        return read_obj(path).vertices  # raises with the offending line
    if not np.isfinite(v).all():
        return read_obj(path).vertices
    return v
