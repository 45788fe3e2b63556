"""Small pure torch functions for the protocols: similarity transforms, segment-wise
(batched, ragged) Umeyama, closest points on triangles, scan crops.

Conventions: points are row vectors ``(..., 3)`` in millimetres; a similarity
``(s, R, t)`` maps ``x -> s * R @ x + t`` (row form ``s * x @ R.T + t``). "Segments" are the
ragged batch layout used by the batched evaluation: a flat tensor of rows plus a ``seg``
index (the pair each row belongs to).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry.mesh import similarity_from_covariance
from ..geometry.mesh import vertex_normals as _mesh_vertex_normals

#: NoW's 7 landmarks from iBUG-68 indices (0-based): subject's right eye outer corner (36),
#: right eye inner (39), left eye inner (42), left eye outer (45), nose bottom / subnasale
#: (33), right mouth corner (48), left mouth corner (54). "Right" = the subject's right =
#: the viewer's left, matching docs/conventions.md.
NOW7_FROM_IBUG68 = (36, 39, 42, 45, 33, 48, 54)
#: iBUG-68 index of the nose tip.
IBUG68_NOSE_TIP = 30


def apply_similarity(x: Tensor, s: Tensor, rot: Tensor, t: Tensor) -> Tensor:
    """``s * R x + t`` for row vectors: x (..., N, 3), s (...,), R (..., 3, 3), t (..., 3)."""
    return s[..., None, None] * (x @ rot.transpose(-1, -2)) + t[..., None, :]


def inverse_similarity(y: Tensor, s: Tensor, rot: Tensor, t: Tensor) -> Tensor:
    """``R^T (y - t) / s`` (the inverse of ``apply_similarity``)."""
    return ((y - t[..., None, :]) @ rot) / s[..., None, None]


def compose_similarity(a: tuple[Tensor, Tensor, Tensor], b: tuple[Tensor, Tensor, Tensor]
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """``a o b`` (apply b first): s = sa sb, R = Ra Rb, t = sa Ra tb + ta."""
    sa, ra, ta = a
    sb, rb, tb = b
    return sa * sb, ra @ rb, sa[..., None] * (ra @ tb[..., None])[..., 0] + ta


def segment_umeyama(src: Tensor, dst: Tensor, weight: Tensor, seg: Tensor, n_seg: int,
                    with_scale: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Weighted least-squares similarity ``dst ~ s R src + t`` per segment (Umeyama 1991).

    Args:
        src, dst: (M, 3) corresponding rows; weight: (M,) >= 0; seg: (M,) long in [0, n_seg).
        with_scale: False gives the rigid (s = 1) solution.
    Returns:
        s (n_seg,), R (n_seg, 3, 3) proper rotations, t (n_seg, 3), total weight (n_seg,).
        Segments with zero total weight get the identity.
    """
    dt, dev = src.dtype, src.device
    wsum = torch.zeros(n_seg, dtype=dt, device=dev).index_add_(0, seg, weight)
    safe = wsum.clamp_min(1e-300)
    mu_s = torch.zeros(n_seg, 3, dtype=dt, device=dev).index_add_(0, seg, weight[:, None] * src) / safe[:, None]
    mu_d = torch.zeros(n_seg, 3, dtype=dt, device=dev).index_add_(0, seg, weight[:, None] * dst) / safe[:, None]
    xs = src - mu_s[seg]
    xd = dst - mu_d[seg]
    cov = torch.zeros(n_seg, 9, dtype=dt, device=dev).index_add_(
        0, seg, (weight[:, None, None] * xd[:, :, None] * xs[:, None, :]).reshape(-1, 9)).reshape(n_seg, 3, 3)
    cov = cov / safe[:, None, None]
    var_s = torch.zeros(n_seg, dtype=dt, device=dev).index_add_(0, seg, weight * (xs * xs).sum(-1)) / safe
    s, rot, t = similarity_from_covariance(cov, var_s, mu_s, mu_d, with_scale)
    empty = wsum <= 0
    if empty.any():
        eye = torch.eye(3, dtype=dt, device=dev).expand(n_seg, 3, 3)
        s = torch.where(empty, torch.ones_like(s), s)
        rot = torch.where(empty[:, None, None], eye, rot)
        t = torch.where(empty[:, None], torch.zeros_like(t), t)
    return s, rot, t, wsum


def similarity_from_landmarks(src: Tensor, dst: Tensor, with_scale: bool = True
                              ) -> tuple[Tensor, Tensor, Tensor]:
    """Similarity (or rigid) Procrustes of (B, K, 3) landmarks ``src -> dst``; rows with a
    non-finite coordinate get zero weight."""
    b, k, _ = src.shape
    ok = torch.isfinite(src).all(-1) & torch.isfinite(dst).all(-1)
    seg = torch.arange(b, device=src.device).repeat_interleave(k)
    s, rot, t, _ = segment_umeyama(torch.nan_to_num(src).reshape(-1, 3), torch.nan_to_num(dst).reshape(-1, 3),
                                   ok.reshape(-1).to(src.dtype), seg, b, with_scale)
    return s, rot, t


def closest_on_triangles_soa(x: tuple[Tensor, Tensor, Tensor], a: tuple[Tensor, Tensor, Tensor],
                             ab: tuple[Tensor, Tensor, Tensor], ac: tuple[Tensor, Tensor, Tensor],
                             abab: Tensor, abac: Tensor, acac: Tensor) -> tuple[Tensor, Tensor]:
    """Closest points on triangles, component-wise (all tensors broadcastable, e.g. (R, K)).

    Triangle = corner ``a`` and edges ``ab``, ``ac`` (with their precomputed dot products).
    Ericson's Voronoi-region method (Real-Time Collision Detection, 5.1.5) written with
    barycentric (v, w): closest = a + v ab + w ac. Zero-area triangles are handled through
    their edge regions. Returns (barycentric (v, w) stacked as (..., 2), squared distance).
    """
    apx, apy, apz = x[0] - a[0], x[1] - a[1], x[2] - a[2]
    d1 = ab[0] * apx + ab[1] * apy + ab[2] * apz
    d2 = ac[0] * apx + ac[1] * apy + ac[2] * apz
    d3, d4 = d1 - abab, d2 - abac
    d5, d6 = d1 - abac, d2 - acac
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    zero = torch.zeros_like(d1)
    one = torch.ones_like(d1)
    # interior (lowest priority), then the regions in reverse order of Ericson's tests
    den = va + vb + vc
    inv = 1.0 / torch.where(den != 0, den, one)
    v = vb * inv
    w = vc * inv
    e = (d4 - d3) + (d5 - d6)
    t_bc = (d4 - d3) / torch.where(e != 0, e, one)
    m = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    v, w = torch.where(m, 1 - t_bc, v), torch.where(m, t_bc, w)
    dd = d2 - d6
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    v, w = torch.where(m, zero, v), torch.where(m, d2 / torch.where(dd != 0, dd, one), w)
    m = (d6 >= 0) & (d5 <= d6)
    v, w = torch.where(m, zero, v), torch.where(m, one, w)
    dd = d1 - d3
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    v, w = torch.where(m, d1 / torch.where(dd != 0, dd, one), v), torch.where(m, zero, w)
    m = (d3 >= 0) & (d4 <= d3)
    v, w = torch.where(m, one, v), torch.where(m, zero, w)
    m = (d1 <= 0) & (d2 <= 0)
    v, w = torch.where(m, zero, v), torch.where(m, zero, w)
    rx = apx - v * ab[0] - w * ac[0]
    ry = apy - v * ab[1] - w * ac[1]
    rz = apz - v * ab[2] - w * ac[2]
    return torch.stack([v, w], -1), rx * rx + ry * ry + rz * rz


def closest_point_on_triangle(x: Tensor, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Closest point of triangle (a, b, c) to x, all (..., 3) broadcastable (Ericson's method,
    see ``closest_on_triangles_soa``). Returns (point (..., 3), squared distance (...))."""
    x, a, b, c = torch.broadcast_tensors(x, a, b, c)
    ab, ac = b - a, c - a
    vw, d2 = closest_on_triangles_soa(x.unbind(-1), a.unbind(-1), ab.unbind(-1), ac.unbind(-1),
                                      (ab * ab).sum(-1), (ab * ac).sum(-1), (ac * ac).sum(-1))
    return a + vw[..., :1] * ab + vw[..., 1:] * ac, d2


def vertex_normals(vertices: Tensor, triangles: Tensor) -> Tensor:
    """Unit vertex normals of one mesh: normalised sum of the adjacent unit face normals
    (Deng's rule; :func:`benchmark3dface.geometry.mesh.vertex_normals`). (N, 3), (F, 3) ->
    (N, 3); isolated vertices get a zero normal."""
    return _mesh_vertex_normals(vertices, triangles.long())


def now_crop_sphere(landmarks7: Tensor, radius_factor: float = 1.4, centre_factor: float = 0.3
                    ) -> tuple[Tensor, Tensor]:
    """NoW's face region: centre = nose_bottom + 0.3 (nose_bridge - nose_bottom) with
    nose_bridge the midpoint of the inner eye corners; radius = 1.4 (outer-eye distance +
    |nose_bridge - nose_bottom|) / 2. landmarks7 (..., 7, 3) in NoW order -> (centre (..., 3),
    radius (...))."""
    bridge = 0.5 * (landmarks7[..., 1, :] + landmarks7[..., 2, :])
    bottom = landmarks7[..., 4, :]
    centre = bottom + centre_factor * (bridge - bottom)
    eye = (landmarks7[..., 0, :] - landmarks7[..., 3, :]).norm(dim=-1)
    nose = (bridge - bottom).norm(dim=-1)
    return centre, radius_factor * (eye + nose) / 2
