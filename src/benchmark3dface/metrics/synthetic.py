"""Synthetic (prediction, scan) pairs with known answers, for validation tests and benchmarks.

A "face" here is a smooth displaced patch of an ellipsoid (millimetres, model frame: x to the
viewer's right, y up, z toward the viewer), triangulated as a regular grid, with a nose-like
bump and random low-frequency relief. 68 landmark vertices are placed at face-like positions
of the grid (only their iBUG semantics matter to the protocols: eye corners 36/39/42/45,
nose tip 30, nose bottom 33, mouth corners 48/54). Nothing here is a real face model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# parametric (u, v) in [-1, 1]^2 of the landmarks (u to the viewer's right, v up)
_LM_UV = {
    36: (-0.42, 0.22), 39: (-0.14, 0.22), 42: (0.14, 0.22), 45: (0.42, 0.22),
    30: (0.0, -0.08), 33: (0.0, -0.22), 48: (-0.25, -0.48), 54: (0.25, -0.48),
}


@dataclass
class SyntheticFace:
    """A triangulated face-like surface. vertices (N, 3) float64 mm, triangles (F, 3) long,
    landmark_indices (68,) long (iBUG semantics, see module docstring), uv (N, 2) grid params."""

    vertices: Tensor
    triangles: Tensor
    landmark_indices: Tensor
    uv: Tensor


def grid_triangles(nu: int, nv: int) -> Tensor:
    """Two triangles per quad of an ``nv x nu`` vertex grid (row-major), counter-clockwise
    seen from +z for a grid with u to the right and v up."""
    idx = np.arange(nu * nv).reshape(nv, nu)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return torch.from_numpy(tri).long()


def relief(uv: Tensor, rng: np.random.Generator, amplitude: float, terms: int = 6) -> Tensor:
    """Smooth random displacement field (mm) on the parameter square: a sum of sinusoids."""
    out = torch.zeros(len(uv), dtype=torch.float64)
    for _ in range(terms):
        fu, fv = rng.uniform(0.5, 2.5, 2)
        pu, pv = rng.uniform(0, 2 * math.pi, 2)
        out += torch.sin(math.pi * fu * uv[:, 0] + pu) * torch.cos(math.pi * fv * uv[:, 1] + pv)
    return amplitude * out / math.sqrt(terms)


def face_surface(n: int = 189, seed: int = 0, radii: tuple[float, float, float] = (80.0, 100.0, 70.0),
                 relief_mm: float = 4.0, nose_mm: float = 22.0) -> SyntheticFace:
    """An ``n x n``-vertex face-like patch (n = 189 gives 35,721 vertices, like BFM's 35,709)."""
    rng = np.random.default_rng(seed)
    u = torch.linspace(-1, 1, n, dtype=torch.float64)
    uu, vv = torch.meshgrid(u, u, indexing="xy")
    uv = torch.stack([uu.reshape(-1), vv.reshape(-1)], 1)
    th, ph = 1.0 * uv[:, 0], 0.9 * uv[:, 1]
    a, b, c = radii
    x = a * torch.sin(th) * torch.cos(ph)
    y = b * torch.sin(ph)
    z = c * torch.cos(th) * torch.cos(ph) - c
    nose = nose_mm * torch.exp(-((uv[:, 0] / 0.13) ** 2 + ((uv[:, 1] + 0.02) / 0.22) ** 2))
    z = z + nose + relief(uv, rng, relief_mm)
    verts = torch.stack([x, y, z], 1)
    lm = torch.zeros(68, dtype=torch.long)
    fill = np.random.default_rng(1234).uniform(-0.5, 0.5, (68, 2))
    for i in range(68):
        pu, pv = _LM_UV.get(i, tuple(fill[i]))
        lm[i] = round((pv + 1) / 2 * (n - 1)) * n + round((pu + 1) / 2 * (n - 1))
    return SyntheticFace(verts, grid_triangles(n, n), lm, uv)


def sample_surface(vertices: Tensor, triangles: Tensor, count: int, rng: np.random.Generator) -> Tensor:
    """``count`` points uniformly (area-weighted) on the triangle mesh, float64 (count, 3)."""
    v = vertices.to(torch.float64)
    a, b, c = (v[triangles[:, i]] for i in range(3))
    area = torch.linalg.cross(b - a, c - a).norm(dim=-1).numpy()
    f = rng.choice(len(area), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    w = torch.from_numpy(np.stack([1 - s, s * (1 - r2), s * r2], 1))
    return w[:, :1] * a[f] + w[:, 1:2] * b[f] + w[:, 2:] * c[f]


def random_rotation(rng: np.random.Generator, max_angle_deg: float = 180.0) -> Tensor:
    """A random rotation (3, 3) float64 by an angle <= max_angle about a random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = math.radians(rng.uniform(0, max_angle_deg))
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(ang) * k + (1 - math.cos(ang)) * (k @ k)


def random_similarity(rng: np.random.Generator, max_angle_deg: float = 180.0, scale_range=(0.5, 2.0),
                      max_shift: float = 100.0) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.tensor(float(rng.uniform(*scale_range)), dtype=torch.float64)
    return s, random_rotation(rng, max_angle_deg), torch.from_numpy(rng.uniform(-max_shift, max_shift, 3))


@dataclass
class ScanPair:
    """A predicted mesh and a GT scan of the same synthetic face.

    pred_vertices (N, 3), pred_triangles (F, 3), pred_landmark_indices (68,): the prediction in
    its own (model) frame; scan (P, 3) and scan_landmarks7 (7, 3), scan_nose_tip (3,): the GT in
    the scan frame (mm); gt_to_scan: the similarity that maps the GT surface into the scan frame.
    """

    pred_vertices: Tensor
    pred_triangles: Tensor
    pred_landmark_indices: Tensor
    scan: Tensor
    scan_landmarks7: Tensor
    scan_nose_tip: Tensor


def make_pair(seed: int, n_grid: int = 189, scan_points: int = 100_000, error_mm: float = 1.5,
              noise_mm: float = 0.2, max_angle_deg: float = 20.0) -> ScanPair:
    """GT surface + scan (dense resample + Gaussian noise, random rigid transform into the scan
    frame) and a prediction (GT + a smooth error field of ~``error_mm`` along z, then a random
    similarity into its own frame)."""
    from .geometry import IBUG68_NOSE_TIP, NOW7_FROM_IBUG68

    rng = np.random.default_rng(seed)
    gt = face_surface(n_grid, seed=seed)
    pts = sample_surface(gt.vertices, gt.triangles, scan_points, rng)
    pts = pts + noise_mm * torch.from_numpy(rng.normal(size=pts.shape))
    rot = random_rotation(rng, max_angle_deg)
    shift = torch.from_numpy(rng.uniform(-50, 50, 3))
    to_scan = lambda p: p @ rot.T + shift
    pred = gt.vertices.clone()
    pred[:, 2] += relief(gt.uv, rng, error_mm)
    s, r2, t2 = random_similarity(rng, max_angle_deg, (0.8, 1.25), 30.0)
    pred = s * pred @ r2.T + t2
    lm7 = gt.vertices[gt.landmark_indices[list(NOW7_FROM_IBUG68)]]
    return ScanPair(pred, gt.triangles, gt.landmark_indices, to_scan(pts), to_scan(lm7),
                    to_scan(gt.vertices[gt.landmark_indices[IBUG68_NOSE_TIP]][None])[0])
