"""Synthetic meshes and a minimal pinhole projection for renderer tests and benchmarks.

Independent of the face model: a smooth, face-sized, displaced grid ("dome with a nose").
Lengths in millimetres, model/world frame of docs/conventions.md (x right, y up, z toward the
camera); triangles are wound counter-clockwise seen from +z (front-facing for the Deng camera).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DENG_FOCAL = 1015.0
DENG_CENTER = 112.0
DENG_DISTANCE = 1000.0


def grid_faces(rows: int, cols: int, device: torch.device | str | None = None) -> Tensor:
    """``(2 (rows-1) (cols-1), 3)`` triangles of a row-major ``rows x cols`` vertex grid.

    Rows run top to bottom (decreasing y), columns left to right (increasing x); triangles are
    counter-clockwise seen from +z.
    """
    r, c = torch.meshgrid(torch.arange(rows - 1, device=device),
                          torch.arange(cols - 1, device=device), indexing="ij")
    a = (r * cols + c).reshape(-1)  # top-left
    b, cc, d = a + 1, a + cols, a + cols + 1  # top-right, bottom-left, bottom-right
    # seen from +z with y up: a(top-left) -> cc(bottom-left) -> b(top-right) is CCW
    return torch.cat([torch.stack([a, cc, b], 1), torch.stack([b, cc, d], 1)], 0)


def face_like_surface(side: int = 187, width: float = 170.0, height: float = 210.0,
                      relief: float = 60.0, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """A smooth face-sized patch: an elliptic dome with a nose-like bump and two eye dents.

    ``side=187`` gives 34,969 vertices and 69,192 triangles. Returns ``verts (N, 3)`` in mm
    (centred near the origin, z toward the camera) and ``faces (F, 3)``.
    """
    ys = torch.linspace(height / 2, -height / 2, side, dtype=torch.float64)
    xs = torch.linspace(-width / 2, width / 2, side, dtype=torch.float64)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    r2 = (2 * x / width) ** 2 + (2 * y / height) ** 2
    dome = relief * torch.sqrt(torch.clamp(1.0 - 0.85 * r2, min=0.0))
    nose = 25.0 * torch.exp(-((x / 12.0) ** 2 + ((y + 5.0) / 28.0) ** 2))
    eyes = -8.0 * (torch.exp(-(((x - 35.0) / 15.0) ** 2 + ((y - 25.0) / 9.0) ** 2))
                   + torch.exp(-(((x + 35.0) / 15.0) ** 2 + ((y - 25.0) / 9.0) ** 2)))
    ripple = 1.5 * torch.sin(x / 7.0) * torch.cos(y / 9.0)
    z = dome + nose + eyes + ripple - relief / 2
    verts = torch.stack([x, y, z], -1).reshape(-1, 3).to(dtype=dtype, device=device)
    return verts, grid_faces(side, side, device=device)


def ellipsoid_grid(side: int = 121, radii: tuple[float, float, float] = (80.0, 100.0, 70.0),
                   bumps: float = 4.0, dtype: torch.dtype = torch.float64,
                   device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """The front half (z >= 0) of a displaced ellipsoid as a ``side x side`` grid.

    Parametrised by longitude/latitude in (-80, 80) degrees so the patch is smooth and its
    silhouette stays inside the image for the Deng camera. Returns ``verts (N, 3)`` mm and
    ``faces (F, 3)`` (CCW seen from +z).
    """
    lim = math.radians(80.0)
    lat = torch.linspace(lim, -lim, side, dtype=torch.float64)  # top to bottom
    lon = torch.linspace(-lim, lim, side, dtype=torch.float64)  # left to right
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    rad = 1.0 + bumps / 100.0 * torch.sin(3 * lo) * torch.cos(2 * la)
    x = radii[0] * rad * torch.cos(la) * torch.sin(lo)
    y = radii[1] * rad * torch.sin(la)
    z = radii[2] * rad * torch.cos(la) * torch.cos(lo)
    verts = torch.stack([x, y, z], -1).reshape(-1, 3).to(dtype=dtype, device=device)
    return verts, grid_faces(side, side, device=device)


def project_pinhole(points: Tensor, focal: float = DENG_FOCAL, cx: float = DENG_CENTER,
                    cy: float = DENG_CENTER, distance: float = DENG_DISTANCE) -> Tensor:
    """World points ``(..., 3)`` mm -> screen ``(..., 3)`` = ``(u px, v px, depth mm)``.

    Deng's camera (docs/conventions.md): at ``(0, 0, distance)`` looking down -z,
    ``z_cam = distance - z``, ``u = cx + f x / z_cam``, ``v = cy - f y / z_cam``.
    """
    zc = distance - points[..., 2]
    return torch.stack([cx + focal * points[..., 0] / zc, cy - focal * points[..., 1] / zc, zc], -1)
