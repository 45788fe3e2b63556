"""Triangle-centric z-buffer rasterizer in plain PyTorch (CPU and CUDA, no compiled code).

Input meshes are already in screen space (docs/conventions.md, "Screen-space meshes"):
``verts (M, N, 3)`` = ``(u, v)`` in pixels with a top-left origin (u right, v down, the centre of
pixel (row i, column j) at ``(j + 0.5, i + 0.5)``) and a depth ``z`` (smaller is nearer; camera
depth in mm for the perspective camera, any sign for weak perspective). All meshes share one
``faces (F, 3)`` topology.

Algorithm (all vectorised, visibility under ``torch.no_grad``):

1. per triangle: signed area, culling, the box of pixel centres it can cover;
2. expand (triangle, candidate pixel) pairs with ``repeat_interleave`` (in chunks of at most
   ``max_pairs`` pairs, so big triangles cannot blow up memory);
3. inside test with edge functions. Each edge function is evaluated in a canonical form (from
   the lower vertex index to the higher one, then negated as needed), so the two triangles
   sharing an edge get bit-exact opposite values; ties (a pixel centre exactly on an edge) are
   resolved by a symbolic perturbation of the pixel centre to the right (then down), which is
   the usual top-left rule: pixel centres on the left or top edges of a triangle belong to
   it, so edges shared by two triangles of one mesh are covered exactly once, no holes;
4. z-buffer: one ``scatter_reduce('amin')`` of an int64 key packing the order-preserving bits
   of the float32 depth (high 32 bits) and the global triangle id (low 32 bits) -- nearest wins,
   ties go to the lowest triangle id;
5. barycentrics and depth recomputed for the winning triangle of each covered pixel only.

Back faces: a triangle is *front-facing* when its vertices run counter-clockwise as seen by the
viewer (x right, y up), i.e. its right-handed normal points toward the camera; in ``(u, v)``
pixel coordinates (v down) that is a negative signed area.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from .fragments import Fragments

#: Default bound on the number of (triangle, pixel) candidate pairs processed at once.
DEFAULT_MAX_PAIRS = 1 << 22
_KEY_EMPTY = torch.iinfo(torch.int64).max
BACKENDS = ("torch", "pytorch3d")


def rasterize(
    verts: Tensor,
    faces: Tensor,
    image_size: int | Sequence[int],
    *,
    mesh_to_image: Tensor | None = None,
    num_images: int | None = None,
    cull_backfaces: bool = False,
    orthographic: bool = False,
    backend: str = "torch",
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> Fragments:
    """Rasterize ``M`` screen-space meshes into ``B`` images with a z-buffer.

    Args:
        verts: ``(M, N, 3)`` float, ``(u px, v px, depth)``; see the module docstring. For a
            perspective projection (``orthographic=False``) depth must be the positive camera
            depth; triangles with a vertex at depth <= 0 are dropped (no near-plane clipping).
        faces: ``(F, 3)`` long vertex indices shared by all meshes.
        image_size: ``H`` (square) or ``(H, W)`` in pixels.
        mesh_to_image: ``(M,)`` long, output image of each mesh (several meshes may share an
            image: multi-face images). Default: mesh ``i`` -> image ``i``.
        num_images: ``B``; default ``mesh_to_image.max() + 1`` (``M`` without a mapping).
        cull_backfaces: drop back-facing triangles (see the module docstring).
        orthographic: screen-space (affine) barycentrics and linear depth (weak perspective);
            otherwise perspective-correct barycentrics, depth interpolated as ``1/z``.
        backend: ``"torch"`` (this module) or ``"pytorch3d"`` (needs the optional pytorch3d).
        max_pairs: torch backend: most candidate pairs per chunk (bounds memory).

    Returns:
        :class:`Fragments` (detached; see :mod:`benchmark3dface.render.interpolate` for the
        differentiable barycentrics).
    """
    h, w = _image_hw(image_size)
    _check_mesh(verts, faces)
    m2i, b = _image_mapping(mesh_to_image, num_images, verts.shape[0], verts.device)
    if backend == "torch":
        return _rasterize_torch(verts.detach(), faces, h, w, m2i, b, cull_backfaces,
                                orthographic, max_pairs)
    if backend == "pytorch3d":
        from .pytorch3d_backend import rasterize_pytorch3d

        return rasterize_pytorch3d(verts.detach(), faces, h, w, m2i, b, cull_backfaces,
                                   orthographic)
    raise ValueError(f"unknown renderer backend {backend!r}; expected one of {BACKENDS}")


# ----------------------------------------------------------------------------- validation


def _image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        h = w = image_size
    else:
        if len(image_size) != 2:
            raise ValueError(f"image_size must be H or (H, W), got {image_size!r}")
        h, w = (int(s) for s in image_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {(h, w)}")
    return int(h), int(w)


def _check_mesh(verts: Tensor, faces: Tensor) -> None:
    if not isinstance(verts, Tensor) or verts.dim() != 3 or verts.shape[-1] != 3:
        shape = tuple(verts.shape) if isinstance(verts, Tensor) else type(verts).__name__
        raise ValueError(f"verts must be a (M, N, 3) tensor of (u, v, depth), got {shape}")
    if not verts.is_floating_point():
        raise ValueError(f"verts must be floating point, got {verts.dtype}")
    if not isinstance(faces, Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        shape = tuple(faces.shape) if isinstance(faces, Tensor) else type(faces).__name__
        raise ValueError(f"faces must be a (F, 3) integer tensor, got {shape}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"faces must be int64 (or int32), got {faces.dtype}")
    if faces.device != verts.device:
        raise ValueError(f"faces on {faces.device} but verts on {verts.device}")
    n, f = verts.shape[1], faces.shape[0]
    if f == 0 or n == 0:
        raise ValueError(f"empty mesh: {n} vertices, {f} faces")
    lo, hi = torch.aminmax(faces)
    if int(lo) < 0 or int(hi) >= n:
        raise ValueError(f"faces index vertices in [{int(lo)}, {int(hi)}] but verts has N={n}")
    if verts.shape[0] * f >= 2**32:
        raise ValueError(f"too many triangles in one call: M*F = {verts.shape[0] * f} >= 2**32")
    if not bool(torch.isfinite(verts).all()):
        raise ValueError("verts contains NaN or infinite values")


def _image_mapping(mesh_to_image: Tensor | None, num_images: int | None, m: int,
                   device: torch.device) -> tuple[Tensor, int]:
    if mesh_to_image is None:
        b = m if num_images is None else int(num_images)
        if b < m:
            raise ValueError(f"num_images={b} < number of meshes {m} without a mesh_to_image")
        return torch.arange(m, device=device), b
    if mesh_to_image.shape != (m,) or mesh_to_image.is_floating_point():
        raise ValueError(f"mesh_to_image must be a ({m},) integer tensor (one image index per "
                         f"mesh), got {tuple(mesh_to_image.shape)} {mesh_to_image.dtype}")
    m2i = mesh_to_image.to(device=device, dtype=torch.int64)
    lo, hi = (int(x) for x in torch.aminmax(m2i))
    b = hi + 1 if num_images is None else int(num_images)
    if lo < 0 or hi >= b:
        raise ValueError(f"mesh_to_image values in [{lo}, {hi}] outside [0, num_images={b})")
    return m2i, b


# ----------------------------------------------------------------------------- geometry


def signed_area2(tri: Tensor) -> Tensor:
    """Twice the signed area of screen triangles ``(..., 3, >=2)`` in the (u, v) plane.

    Negative = counter-clockwise as seen by the viewer (v points down) = front-facing.
    """
    x, y = tri[..., 0], tri[..., 1]
    return (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (y[..., 1] - y[..., 0]) * (
        x[..., 2] - x[..., 0])


def barycentrics_at(corners: Tensor, px: Tensor, py: Tensor,
                    orthographic: bool) -> tuple[Tensor, Tensor]:
    """Barycentrics and depth of points ``(px, py)`` (P,) in screen triangles.

    ``corners`` is planar, ``(3, 3, P)`` = (coordinate u/v/z, vertex, point) (see
    :func:`gather_triangles`). Returns ``bary (P, 3)`` (perspective-correct unless
    ``orthographic``; a transposed view of a contiguous ``(3, P)`` tensor) and ``depth (P,)``.
    Differentiable w.r.t. ``corners`` (first order) with a hand-written backward pass (a few
    tensor ops instead of a long autograd graph); :func:`barycentrics_autograd` is the
    plain-autograd version of the same function.
    """
    bary, depth = _Barycentrics.apply(corners, px, py, orthographic)
    return bary.t(), depth


_NEXT, _PREV = (1, 2, 0), (2, 0, 1)


def _rows(x: Tensor, order: tuple[int, int, int]) -> Tensor:
    """``(3, P)`` rows reordered (vertex k+1 or k-1 for every k)."""
    return x.index_select(0, torch.tensor(order, device=x.device))


def _edge_functions(x: Tensor, y: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """``(3, P)`` edge functions ``w_k = E(v_{k+1}, v_{k+2}, p)`` (sum: twice the area)."""
    x1, x2, y1, y2 = _rows(x, _NEXT), _rows(x, _PREV), _rows(y, _NEXT), _rows(y, _PREV)
    return (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)


class _Barycentrics(torch.autograd.Function):
    """Perspective-correct (or affine) barycentrics and depth with an analytic backward.

    With edge functions ``w_k`` and ``A = sum w``: perspective ``r_k = w_k / z_k``,
    ``R = sum r``, ``b = r / R``, ``depth = A / R``; orthographic ``b = w / A``,
    ``depth = sum b z``. ``dw_k/dv`` follows from ``w_k = (b - a) x (p - a)`` with
    ``a = v_{k+1}``, ``b = v_{k+2}``. Works on planar ``(3, P)`` rows.
    """

    @staticmethod
    def forward(ctx, corners: Tensor, px: Tensor, py: Tensor, orthographic: bool):
        x, y, z = corners.unbind(0)
        w = _edge_functions(x, y, px, py)
        area = w.sum(0)
        if orthographic:
            bary = w.div_(area)
            depth = (bary * z).sum(0)
            ctx.save_for_backward(x, y, z, px, py, bary, area)
        else:
            r = w.div_(z)
            rsum = r.sum(0)
            bary = r / rsum
            depth = area.div_(rsum)
            ctx.save_for_backward(x, y, z, px, py, bary, rsum, r, depth)
        ctx.orthographic = orthographic
        return bary, depth

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_bary: Tensor | None, g_depth: Tensor | None):
        saved = ctx.saved_tensors
        x, y, z, px, py, bary = saved[:6]
        g_bary = torch.zeros_like(bary) if g_bary is None else g_bary
        g_depth = torch.zeros_like(px) if g_depth is None else g_depth
        if ctx.orthographic:
            area = saved[6]
            g_b = g_bary + g_depth * z
            g_w = (g_b - (g_b * bary).sum(0)).div_(area)
            g_z = g_depth * bary
        else:
            rsum, r, depth = saved[6:]
            g_r = (g_bary - (g_bary * bary).sum(0) - g_depth * depth).div_(rsum)
            g_w = (g_r / z).add_(g_depth / rsum)
            g_z = g_r.mul_(r).div_(z).neg_()
        # vertex i is the start of edge i-1 and the end of edge i+1
        g_prev, g_next = _rows(g_w, _PREV), _rows(g_w, _NEXT)
        g_x = g_prev * (_rows(y, _NEXT) - py) + g_next * (py - _rows(y, _PREV))
        g_y = g_prev * (px - _rows(x, _NEXT)) + g_next * (_rows(x, _PREV) - px)
        return torch.stack([g_x, g_y, g_z]), None, None, None


def barycentrics_autograd(corners: Tensor, px: Tensor, py: Tensor,
                          orthographic: bool) -> tuple[Tensor, Tensor]:
    """Same as :func:`barycentrics_at`, differentiated by autograd (reference for tests)."""
    x, y, z = corners.unbind(0)
    w = _edge_functions(x, y, px, py)
    area = w.sum(0)
    if orthographic:
        bary = w / area
        return bary.t(), (bary * z).sum(0)
    r = w / z
    rsum = r.sum(0)
    return (r / rsum).t(), area / rsum


def _floordiv(x: Tensor, d: int) -> Tensor:
    """``x // d`` for non-negative int64 ``x`` < 2**52: on CPU via vectorised float64 division
    (exact: ``x / d`` is at least ``1 / d`` below the next integer and ``q d`` divides exactly)."""
    if x.device.type != "cpu":
        return torch.div(x, d, rounding_mode="floor")
    return x.double().div_(float(d)).floor_().long()


def winner_vertices(faces: Tensor, num_vertices: int, tri_id: Tensor) -> tuple[Tensor, Tensor]:
    """Decode global triangle ids ``mesh * F + face`` (P,) into ``mesh (P,)`` and the
    triangle's per-mesh vertex ids ``(P, 3)``."""
    f = faces.shape[0]
    mesh = _floordiv(tri_id, f)
    return mesh, faces.index_select(0, tri_id - mesh * f)


def gather_triangles(verts: Tensor, flat_index: Tensor) -> Tensor:
    """Planar ``(3, 3, P)`` corners (coordinate, vertex, triangle) of screen triangles of
    ``verts (M, N, 3)``; ``flat_index (3 P,)`` lists vertex k of every triangle (k-major) as an
    index into the ``M * N`` vertices (with autograd)."""
    planar = verts.permute(2, 0, 1).reshape(3, -1)
    return planar.index_select(1, flat_index).view(3, 3, -1)


def covered_pixels(mask: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Covered pixels of a ``(B, H, W)`` bool mask: flat indices ``(P,)`` into ``(B, H, W)``
    and their pixel-centre coordinates ``u, v (P,)``."""
    _, h, w = mask.shape
    bij = mask.nonzero()
    b, i, j = bij.unbind(1)
    flat = (b * h).add_(i).mul_(w).add_(j)
    return flat, j.to(dtype).add_(0.5), i.to(dtype).add_(0.5)


# ----------------------------------------------------------------------------- torch backend


def _float_order_key(x: Tensor) -> Tensor:
    """int64 whose order matches the float32 order of ``x`` (for packing into a z-buffer key)."""
    bits = x.float().contiguous().view(torch.int32)
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long()


@torch.no_grad()
def _rasterize_torch(verts: Tensor, faces: Tensor, h: int, w: int, mesh_to_image: Tensor,
                     num_images: int, cull: bool, orthographic: bool, max_pairs: int) -> Fragments:
    m, n, _ = verts.shape
    f = faces.shape[0]
    device, dtype = verts.device, verts.dtype
    # 1. per-triangle setup on (M, F) planes -------------------------------------------------
    faces, idx, parity = _face_setup(faces, dtype)
    idx = idx.expand(m, -1)

    planes = verts.permute(2, 0, 1).contiguous()  # (3, M, N)

    def corners(c: int) -> tuple[Tensor, Tensor, Tensor]:
        plane = torch.gather(planes[c], 1, idx).view(m, 3, f)
        return plane[:, 0], plane[:, 1], plane[:, 2]

    x0, x1, x2 = corners(0)
    y0, y1, y2 = corners(1)
    z0, z1, z2 = corners(2)
    # canonical edge vectors; edge k is opposite vertex Pk (anchors P1, P0, P0)
    dx0, dy0 = x2 - x1, y2 - y1
    dx1, dy1 = x2 - x0, y2 - y0
    dx2, dy2 = x1 - x0, y1 - y0
    area = (dx2 * dy1).addcmul_(dy2, dx1, value=-1)  # twice the signed area of P0 P1 P2
    valid = area != 0
    if cull:  # front-facing = negative area in the face's own order (see module docstring)
        valid &= area * parity < 0
    if not orthographic:
        valid &= _min3(z0, z1, z2) > 0
    # orient the edge functions so that the interior is positive: w_k = sd_k x (p - anchor_k)
    sgn = area.sign()
    absarea = area.abs_()
    sdx0, sdy0 = dx0.mul_(sgn), dy0.mul_(sgn)
    sgn.neg_()  # edge P2 -> P0 runs against its canonical direction P0 -> P2
    sdx1, sdy1 = dx1.mul_(sgn), dy1.mul_(sgn)
    sgn.neg_()
    sdx2, sdy2 = dx2.mul_(sgn), dy2.mul_(sgn)

    # boxes of candidate pixel centres (j0 <= j < j0 + nx, i0 <= i < i0 + ny)
    def box(a: Tensor, b: Tensor, c: Tensor, size: int) -> tuple[Tensor, Tensor]:
        lo_ = _min3(a, b, c).sub_(0.5).ceil_().clamp_(0, size)
        hi_ = torch.maximum(a, b)
        hi_ = torch.maximum(hi_, c, out=hi_).sub_(0.5).floor_().clamp_(max=size - 1)
        return lo_, hi_.sub_(lo_).add_(1).clamp_(min=0)

    j0, nx = box(x0, x1, x2, w)
    i0, ny = box(y0, y1, y2, h)
    count = (nx * ny).mul_(valid)  # float, exact small integers
    base = (mesh_to_image * (h * w))[:, None]  # (M, 1) long
    pix_key = torch.full((num_images * h * w,), _KEY_EMPTY, dtype=torch.int64, device=device)

    # 2. triangles with more than one candidate pixel: expand (triangle, pixel) pairs --------
    multi = (count > 1).view(-1).nonzero().squeeze(1)
    if multi.numel() > 0:
        def take(*planes: Tensor) -> Tensor:
            return torch.stack([q.reshape(-1).index_select(0, multi) for q in planes], 1)

        fdata = take(x1, x0, x0, y1, y0, y0, sdx0, sdx1, sdx2, sdy0, sdy1, sdy2, z0, z1, z2,
                     absarea)
        ldata = take(j0, i0, nx, count).long()
        ldata[:, 3] = base.view(-1).index_select(0, _floordiv(multi, f))
        extra = count.view(-1).index_select(0, multi).long() - 1  # candidates after the first
        ends = extra.cumsum(0)
        starts = ends - extra - 1  # candidate number within its triangle = pair - starts
        total = int(ends[-1])
        for s_ in range(0, total, max_pairs):
            pair = torch.arange(s_, min(s_ + max_pairs, total), device=device)
            if total <= max_pairs:
                t = torch.repeat_interleave(torch.arange(multi.numel(), device=device), extra,
                                            output_size=total)
            else:
                t = torch.searchsorted(ends, pair, right=True)
            _scatter_pairs(pix_key, t, pair - starts[t], fdata, ldata, multi, w, orthographic)

    # 3. the first candidate pixel of every triangle (most triangles of a dense mesh cover at
    #    most one pixel centre, so this is the bulk of the work, done without any expansion) -
    tri_ids = torch.arange(m * f, device=device).view(m, f)
    live = (count > 0).view(-1).nonzero().squeeze(1)
    if live.numel() < 0.75 * count.numel():  # small triangles: most cover no pixel centre
        # the same element-wise arithmetic on the triangles that can cover one (same bits)
        planes = (x0, x1, x2, y0, y1, y2, z0, z1, z2, sdx0, sdx1, sdx2, sdy0, sdy1, sdy2, j0, i0, absarea, count, sgn)
        (x0, x1, x2, y0, y1, y2, z0, z1, z2, sdx0, sdx1, sdx2, sdy0, sdy1, sdy2, j0, i0, absarea, count,
         sgn) = (q.reshape(-1).index_select(0, live) for q in planes)
        base = base.view(-1).index_select(0, _floordiv(live, f))
        tri_ids = live
    pix = _pixel_index(j0, i0, base, w, pix_key.numel())
    px, py = j0.add_(0.5), i0.add_(0.5)
    ey1, ey0, ex1, ex0 = py - y1, py.sub_(y0), px - x1, px.sub_(x0)
    w0 = sdx0.mul_(ey1).sub_(sdy0.mul_(ex1))  # (the sd planes are consumed here)
    w1 = sdx1.mul_(ey0).sub_(sdy1.mul_(ex0))
    w2 = sdx2.mul_(ey0).sub_(sdy2.mul_(ex0))
    wmin = _min3(w0, w1, w2)
    inside = (wmin >= 0).logical_and_(count > 0)
    on_edge = ((wmin == 0) & inside).view(-1).nonzero().squeeze(1)
    if on_edge.numel() > 0:  # rare exact ties: apply the top-left rule
        def at(*planes: Tensor) -> Tensor:
            return torch.stack([q.reshape(-1)[on_edge] for q in planes], 1)

        sg = at(sgn)
        xs, ys = at(x0, x1, x2), at(y0, y1, y2)
        sdx = torch.stack([xs[:, 2] - xs[:, 1], xs[:, 0] - xs[:, 2], xs[:, 1] - xs[:, 0]], 1) * sg
        sdy = torch.stack([ys[:, 2] - ys[:, 1], ys[:, 0] - ys[:, 2], ys[:, 1] - ys[:, 0]], 1) * sg
        inside.view(-1)[on_edge] = _tie_inside(at(w0, w1, w2), sdx, sdy)
    key = _depth_key(w0, w1, w2, z0, z1, z2, absarea, orthographic)
    key.bitwise_left_shift_(32).bitwise_or_(tri_ids)
    key.masked_fill_(~inside, _KEY_EMPTY)
    pix.masked_fill_(~inside, 0)
    pix_key.scatter_reduce_(0, pix.view(-1), key.view(-1), "amin")

    # 4. winners: barycentrics and depth ---------------------------------------------------
    covered, px, py = covered_pixels((pix_key != _KEY_EMPTY).view(num_images, h, w), dtype)
    win = pix_key.index_select(0, covered).bitwise_and_(0xFFFFFFFF)
    size = num_images * h * w
    pix_to_face = torch.full((size,), -1, dtype=torch.int64, device=device)
    pix_to_face.index_copy_(0, covered, win)
    bary = torch.zeros(size, 3, dtype=dtype, device=device)
    depth = torch.full((size,), float("inf"), dtype=dtype, device=device)
    if covered.numel() > 0:
        mesh, vidx = winner_vertices(faces, n, win)
        tri = gather_triangles(verts, (vidx + (mesh * n)[:, None]).t().reshape(-1))
        b_, d_ = barycentrics_at(tri, px, py, orthographic)
        bary.index_copy_(0, covered, b_)
        depth.index_copy_(0, covered, d_)
    return Fragments(pix_to_face.view(num_images, h, w), bary.view(num_images, h, w, 3),
                     depth.view(num_images, h, w), f, m, orthographic)


_FACE_SETUP: dict[int, tuple[weakref.ref, int, torch.dtype, tuple[Tensor, Tensor, Tensor]]] = {}


def _face_setup(faces: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Per-topology constants: int64 faces, ``(1, 3 F)`` vertex ids in increasing order per
    face (k-major) and the parity of that sort (recovers the face's own winding). Vertices are
    taken in increasing id order P0 < P1 < P2, so every edge is stored from its lower to its
    higher vertex id: the two triangles sharing an edge compute its edge function with
    bit-identical operations (only the sign differs). Cached for the same, unmodified tensor
    (renderers call this with one topology over and over)."""
    hit = _FACE_SETUP.get(id(faces))
    if hit is not None and hit[0]() is faces and hit[1] == faces._version and hit[2] == dtype:
        return hit[3]
    lf = faces.long()
    sorted_ids, perm = lf.sort(1)
    p = perm.to(dtype)
    parity = ((p[:, 1] - p[:, 0]) * (p[:, 2] - p[:, 0]) * (p[:, 2] - p[:, 1])).sign()
    out = (lf, sorted_ids.t().reshape(1, -1), parity)
    if len(_FACE_SETUP) >= 16:
        _FACE_SETUP.clear()
    _FACE_SETUP[id(faces)] = (weakref.ref(faces), faces._version, dtype, out)
    return out


def _min3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    out = torch.minimum(a, b)
    return torch.minimum(out, c, out=out)


def _pixel_index(j0: Tensor, i0: Tensor, base: Tensor, w: int, size: int) -> Tensor:
    """Flat int64 pixel index ``base + i0 * W + j0`` from float column/row planes
    (``size`` = number of pixels of all images; float32 is exact below 2**24)."""
    exact = torch.float32 if size < 2**24 and j0.dtype != torch.float64 else torch.float64
    return (i0.to(exact) * w).add_(j0).add_(base.to(exact)).long()


def _tie_inside(ws: Tensor, sdx: Tensor, sdy: Tensor) -> Tensor:
    """Top-left rule for pixel centres with some edge function exactly 0 (all ``ws >= 0``).

    A centre on an edge is inside when moving it infinitesimally right (then down) enters
    the triangle: ``d w = -sdy du + sdx dv > 0``.
    """
    enters = (sdy < 0) | ((sdy == 0) & (sdx > 0))
    return ((ws > 0) | enters).all(1)


def _depth_key(w0: Tensor, w1: Tensor, w2: Tensor, z0: Tensor, z1: Tensor, z2: Tensor,
               absarea: Tensor, orthographic: bool) -> Tensor:
    """int64 z-buffer order key (nearer = smaller) of the depth interpolated at the pixel.

    Edge functions ``w_k >= 0`` sum to ``absarea``; perspective: ``depth = A / sum w_k / z_k``,
    orthographic: ``depth = sum w_k z_k / A``. Consumes (overwrites) ``w0, w1, w2``.
    """
    if orthographic:
        d = w0.mul_(z0).add_(w1.mul_(z1)).add_(w2.mul_(z2)).div_(absarea)
        return _float_order_key(d)
    d = absarea / w0.div_(z0).add_(w1.div_(z1)).add_(w2.div_(z2))
    # a positive float's bits are already in float order
    return d.float().view(torch.int32).long()


def _scatter_pairs(pix_key: Tensor, t: Tensor, local: Tensor, fdata: Tensor, ldata: Tensor,
                   tri_id: Tensor, w: int, orthographic: bool) -> None:
    """Inside-test candidate number ``local`` of triangles ``t`` (rows of ``fdata`` /
    ``ldata``, see ``_rasterize_torch``) and z-buffer the hits; ``tri_id[t]`` is the global
    triangle id. Same arithmetic as the first-candidate pass (bit-identical edge functions)."""
    ld = ldata[t]
    nx = ld[:, 2]
    row = torch.div(local, nx, rounding_mode="floor")
    ix = ld[:, 0] + (local - row * nx)
    iy = ld[:, 1] + row
    fd = fdata[t]
    px = ix.to(fd.dtype) + 0.5
    py = iy.to(fd.dtype) + 0.5
    # (P, 3) edge functions sdx * (py - ay) - sdy * (px - ax), anchors (P1, P0, P0)
    wv = fd[:, 6:9] * (py[:, None] - fd[:, 3:6]) - fd[:, 9:12] * (px[:, None] - fd[:, 0:3])
    inside = (wv >= 0).all(1)
    tie = (wv == 0).any(1) & inside
    if bool(tie.any()):
        inside[tie] = _tie_inside(wv[tie], fd[tie, 6:9], fd[tie, 9:12])
    w0, w1, w2 = wv.unbind(1)
    key = _depth_key(w0.clone(), w1.clone(), w2.clone(), fd[:, 12], fd[:, 13], fd[:, 14],
                     fd[:, 15], orthographic)
    key = (key << 32) | tri_id[t]
    key.masked_fill_(~inside, _KEY_EMPTY)
    pix_key.scatter_reduce_(0, ld[:, 3] + iy * w + ix, key, "amin")
