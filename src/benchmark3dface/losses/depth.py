"""Depth-map terms of Richardson'17's FineNet: depth fidelity, Laplacian smoothness, and
normals from a depth map (finite differences, orthographic or perspective).

Depth maps are ``(B, H, W)`` (or ``(B, 1, H, W)``) in millimetres with "smaller is nearer"
(docs/conventions.md: ``z_cam`` for the perspective camera, ``-z_world`` for weak
perspective); values must be finite wherever they are used (fill background NaNs first).
Pixel (row i, column j) has image coordinates ``(u, v) = (j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import check_shape, masked_mean


def _as_depth(depth: Tensor, name: str = "depth") -> Tensor:
    if depth.dim() == 4 and depth.shape[1] == 1:
        depth = depth[:, 0]
    check_shape(name, depth, (None, None, None))
    return depth


def _as_mask(mask: Tensor | None, depth: Tensor, name: str = "mask") -> Tensor:
    if mask is None:
        return torch.ones_like(depth)
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    check_shape(name, mask, tuple(depth.shape))
    return mask.to(depth.dtype)


def depth_to_points(depth: Tensor, focal: float | None = None, cx: float | None = None,
                    cy: float | None = None, pixel_size: float = 1.0) -> Tensor:
    """Back-project a depth map to a point map ``(B, 3, H, W)`` (mm) in a camera-centred frame
    with x right, y up, z toward the viewer (the world frame shifted so the camera is at 0).

    Perspective (``focal`` in px, principal point ``(cx, cy)`` default the image centre):
    ``x = (u - cx) d / f``, ``y = -(v - cy) d / f``, ``z = -d``.
    Orthographic (``focal=None``): ``x = u * pixel_size``, ``y = -v * pixel_size``, ``z = -d``
    with ``pixel_size`` in mm per pixel (``1 / s`` for a weak-perspective scale ``s`` px/mm).
    """
    depth = _as_depth(depth)
    _, h, w = depth.shape
    v = torch.arange(h, dtype=depth.dtype, device=depth.device)[:, None].expand(h, w) + 0.5
    u = torch.arange(w, dtype=depth.dtype, device=depth.device)[None, :].expand(h, w) + 0.5
    if focal is None:
        x = (u * pixel_size).expand_as(depth)
        y = (-v * pixel_size).expand_as(depth)
    else:
        cx = w / 2 if cx is None else cx
        cy = h / 2 if cy is None else cy
        x = (u - cx) * depth / focal
        y = -(v - cy) * depth / focal
    return torch.stack([x, y, -depth], 1)


def normals_from_depth(depth: Tensor, focal: float | None = None, cx: float | None = None,
                       cy: float | None = None, pixel_size: float = 1.0) -> Tensor:
    """Unit surface normals ``(B, 3, H, W)`` of a depth map, facing the viewer (+z for a
    fronto-parallel surface), in the frame of ``depth_to_points``.

    Tangents are central differences of the back-projected points (one-sided at the image
    border); ``n = dP/dv x dP/du`` normalised.  Normals next to a depth discontinuity (mask
    border) mix both sides: erode the mask where that matters.  Camera arguments as in
    ``depth_to_points``.
    """
    p = depth_to_points(depth, focal, cx, cy, pixel_size)
    dp_dv, dp_du = torch.gradient(p, dim=(2, 3))
    n = torch.cross(dp_dv, dp_du, dim=1)
    return F.normalize(n, dim=1, eps=1e-12)


def depth_laplacian(depth: Tensor) -> tuple[Tensor, Tensor]:
    """Discrete 4-neighbour Laplacian ``z[i-1,j] + z[i+1,j] + z[i,j-1] + z[i,j+1] - 4 z[i,j]``.

    Returns:
        ``(lap, interior)``: ``(B, H, W)`` Laplacian (mm, zero on the 1-px border) and the bool
        map of pixels where it is defined (not on the border).
    """
    z = _as_depth(depth)
    c = z[:, 1:-1, 1:-1]
    lap = z[:, :-2, 1:-1] + z[:, 2:, 1:-1] + z[:, 1:-1, :-2] + z[:, 1:-1, 2:] - 4 * c
    lap = F.pad(lap, (1, 1, 1, 1))
    interior = torch.zeros_like(z, dtype=torch.bool)
    interior[:, 1:-1, 1:-1] = True
    return lap, interior


def erode_mask4(mask: Tensor) -> Tensor:
    """Pixels whose 4 neighbours and themselves are all in ``mask`` ``(B, H, W)`` (bool out;
    the image border counts as outside)."""
    m = mask.bool()
    p = F.pad(m.to(torch.uint8), (1, 1, 1, 1), value=0).bool()
    return m & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]


def depth_smoothness_loss(depth: Tensor, mask: Tensor | None = None) -> Tensor:
    """Richardson'17 ``E_sm = ||Laplacian z||_1``, as a mean over the pixels where the whole
    4-neighbour stencil lies inside ``mask`` (mm per pixel^2; a plane gives 0).

    Args:
        depth: ``(B, H, W)`` depth (mm).  mask: ``(B, H, W)`` bool/float; None = whole image.
    """
    z = _as_depth(depth)
    lap, interior = depth_laplacian(z)
    m = interior if mask is None else erode_mask4(_as_mask(mask, z) > 0)
    return masked_mean(lap.abs(), m)


def depth_fidelity_loss(depth: Tensor, depth0: Tensor, mask: Tensor | None = None) -> Tensor:
    """Richardson'17 ``E_f = ||z - z0||^2`` as a masked mean over pixels (mm^2): keeps the
    refined depth ``z`` close to the coarse depth ``z0``."""
    z = _as_depth(depth)
    z0 = _as_depth(depth0, "depth0")
    if z.shape != z0.shape:
        raise ValueError(f"depth {tuple(z.shape)} and depth0 {tuple(z0.shape)} must match")
    return masked_mean((z - z0) ** 2, _as_mask(mask, z))
