"""Mesh operations on batched vertex tensors with a shared triangle list.

Vertices (..., N, 3) in any length unit, triangles (F, 3) long, 0-based.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def face_normals(vertices: Tensor, triangles: Tensor, normalize: bool = True) -> Tensor:
    """(..., N, 3), (F, 3) -> (..., F, 3) triangle normals (counter-clockwise = front)."""
    v0 = vertices[..., triangles[:, 0], :]
    v1 = vertices[..., triangles[:, 1], :]
    v2 = vertices[..., triangles[:, 2], :]
    n = torch.cross(v1 - v0, v2 - v0, dim=-1)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12) if normalize else n


def vertex_normals(vertices: Tensor, triangles: Tensor) -> Tensor:
    """Unit vertex normals: the normalised sum of the adjacent unit face normals (Deng's rule).

    (..., N, 3), (F, 3) -> (..., N, 3).
    """
    fn = face_normals(vertices, triangles)
    out = torch.zeros_like(vertices)
    idx = triangles.reshape(-1)
    contrib = fn.unsqueeze(-2).expand(*fn.shape[:-1], 3, 3).reshape(*fn.shape[:-2], -1, 3)
    out = out.index_add(-2, idx, contrib)
    return torch.nn.functional.normalize(out, dim=-1, eps=1e-12)


def vertex_face_table(tri: Tensor, n: int) -> Tensor:
    """``(N, K)`` ids of the faces around each vertex in increasing order, ``-1`` padded
    (K = the largest valence)."""
    f = tri.shape[0]
    vert = tri.reshape(-1)
    face = torch.arange(f, device=tri.device).repeat_interleave(3)
    order = torch.argsort(vert * f + face)
    vert, face = vert[order], face[order]
    counts = torch.bincount(vert, minlength=n)
    start = torch.cumsum(counts, 0) - counts
    col = torch.arange(len(vert), device=tri.device) - start[vert]
    table = torch.full((n, max(int(counts.max()) if n else 1, 1)), -1, dtype=torch.long, device=tri.device)
    table[vert, col] = face
    return table


def edges(triangles: Tensor) -> Tensor:
    """(F, 3) -> (E, 2) unique undirected edges, sorted per row."""
    e = torch.cat([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    return torch.unique(e, dim=0)


def uniform_laplacian(triangles: Tensor, num_vertices: int) -> Tensor:
    """Sparse (N, N) graph Laplacian L = D - A of the mesh edges (float32, COO)."""
    e = edges(triangles)
    i = torch.cat([e[:, 0], e[:, 1]])
    j = torch.cat([e[:, 1], e[:, 0]])
    deg = torch.zeros(num_vertices).index_add_(0, i, torch.ones(i.shape[0]))
    rows = torch.cat([i, torch.arange(num_vertices)])
    cols = torch.cat([j, torch.arange(num_vertices)])
    vals = torch.cat([-torch.ones(i.shape[0]), deg])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (num_vertices, num_vertices),
                                   check_invariants=False).coalesce()


def similarity_from_covariance(cov: Tensor, var_src: Tensor, mu_src: Tensor, mu_dst: Tensor,
                               with_scale: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """The closed-form step of Umeyama (1991), shared by every similarity fit in the project.

    Args:
        cov: (..., 3, 3) weighted cross-covariance ``E[(dst - mu_dst)(src - mu_src)^T]``.
        var_src: (...,) weighted variance of ``src`` (``E|src - mu_src|^2``).
        mu_src, mu_dst: (..., 3) weighted means.
        with_scale: False gives the rigid (s = 1) solution.
    Returns:
        (s (...,), R (..., 3, 3) a proper rotation (reflections fixed; a degenerate
        ``det(U V^T) = 0`` counts as +1), t (..., 3)) with ``dst ~ s R src + t``.
        ``tr(D Sigma)`` of the paper is ``(R * cov).sum((-1, -2))``.
    """
    u, sig, vt = torch.linalg.svd(cov)
    d = torch.sign(torch.det(u @ vt))
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1)
    rot = u @ torch.diag_embed(fix) @ vt
    if with_scale:
        scale = (sig * fix).sum(-1) / var_src.clamp_min(torch.finfo(var_src.dtype).tiny)
    else:
        scale = torch.ones_like(d)
    t = mu_dst - scale[..., None] * (rot @ mu_src[..., None])[..., 0]
    return scale, rot, t


def umeyama(src: Tensor, dst: Tensor, with_scale: bool = True, weights: Tensor | None = None):
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991), batched.

    Args:
        src, dst: (..., K, 3) corresponding points.
        weights: optional (..., K) non-negative weights (a positive sum per batch entry).
    Returns:
        (s (...,), R (..., 3, 3), t (..., 3)); see :func:`similarity_from_covariance`.
    """
    if weights is None:
        weights = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device)
    w = weights / weights.sum(-1, keepdim=True)
    mu_s = (w[..., None] * src).sum(-2)
    mu_d = (w[..., None] * dst).sum(-2)
    xs = src - mu_s[..., None, :]
    xd = dst - mu_d[..., None, :]
    cov = (w[..., None] * xd).transpose(-1, -2) @ xs  # (..., 3, 3)
    var_s = (w * (xs ** 2).sum(-1)).sum(-1)
    return similarity_from_covariance(cov, var_s, mu_s, mu_d, with_scale)


def symmetry_map(vertices: np.ndarray) -> np.ndarray:
    """Left-right symmetry map of a (near-)symmetric mesh: index of the vertex closest to each
    vertex mirrored at x = 0. (N, 3) -> (N,) int64."""
    from scipy.spatial import cKDTree

    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    _, idx = cKDTree(vertices).query(mirrored)
    return idx.astype(np.int64)
