"""Shading passes: pure functions from the visible surface to images.

All image outputs are channel-first ``(B, C, H, W)`` like the framework's images
(docs/conventions.md), except the integer label map ``(B, H, W)``. Inputs:

- ``surface``: :class:`~benchmark3dface.render.interpolate.PixelBarycentrics` (differentiable
  barycentrics of the covered pixels, from :func:`pixel_barycentrics`);
- per-vertex quantities as ``(M, N, C)`` (one per mesh) or ``(N, C)`` (shared).

Lighting is the caller's job: the RGB pass interpolates per-vertex colours (e.g. albedo times
SH irradiance, in [0, 1]).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fragments import Fragments
from .interpolate import PixelBarycentrics


def _chw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)


def render_rgb(surface: PixelBarycentrics, vertex_colors: Tensor,
               background: Tensor | float | None = None) -> Tensor:
    """``(B, 3, H, W)`` image of interpolated vertex colours.

    ``background``: ``None`` (zeros), a scalar, or an image broadcastable to ``(B, 3, H, W)``
    (e.g. the input photo) composited where no triangle covers the pixel (hard mask).
    Differentiable w.r.t. the colours, the screen-space vertices and the background.
    """
    covered = surface.interpolate_covered(vertex_colors)
    if background is None or not isinstance(background, Tensor):
        return _chw(surface.to_image(covered, 0.0 if background is None else background))
    b, h, w = surface.image_shape
    bg = background.to(covered.dtype).expand(b, 3, h, w).permute(0, 2, 3, 1).reshape(-1, 3)
    return _chw(bg.index_copy(0, surface.pixel_index, covered).view(b, h, w, 3))


def render_mask(fragments: Fragments, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, 1, H, W)`` coverage mask (1 where a triangle covers the pixel centre), no grad."""
    return fragments.mask.to(dtype).unsqueeze(1)


def render_depth(surface: PixelBarycentrics, background: float = 0.0) -> Tensor:
    """``(B, 1, H, W)`` depth of the visible surface (units of the input z: mm for a
    perspective camera; ``-s z`` for weak perspective), differentiable w.r.t. the vertices.

    ``background`` fills uncovered pixels (0 by default; ``float('nan')`` matches
    ``Sample.depth``).
    """
    return _chw(surface.to_image(surface.depth[:, None], background))


def render_normals(surface: PixelBarycentrics, vertex_normals: Tensor,
                   normalize: bool = True) -> Tensor:
    """``(B, 3, H, W)`` interpolated vertex normals (in whatever frame the caller gives them),
    re-normalised to unit length when ``normalize``; zeros on background."""
    nrm = surface.interpolate_covered(vertex_normals)
    if normalize:
        nrm = torch.nn.functional.normalize(nrm, dim=-1, eps=1e-12)
    return _chw(surface.to_image(nrm, 0.0))


def pncc_code(mean_vertices: Tensor) -> Tensor:
    """PNCC per-vertex code: mean-face vertex coordinates normalised to [0, 1] per axis.

    ``(N, 3)`` (or ``(..., N, 3)``) model-frame mean face -> same shape in [0, 1]:
    ``(v - min) / (max - min)`` over the vertices, per axis.
    """
    lo = mean_vertices.amin(-2, keepdim=True)
    hi = mean_vertices.amax(-2, keepdim=True)
    return (mean_vertices - lo) / (hi - lo).clamp_min(torch.finfo(mean_vertices.dtype).tiny)


def render_pncc(surface: PixelBarycentrics, pncc: Tensor) -> Tensor:
    """``(B, 3, H, W)`` Projected Normalized Coordinate Code: the interpolated
    :func:`pncc_code` of the mean face (``(N, 3)`` shared or ``(M, N, 3)``); zeros on background."""
    return _chw(surface.interpolate(pncc, 0.0))


def render_labels(surface: PixelBarycentrics, vertex_labels: Tensor) -> Tensor:
    """``(B, H, W)`` long label map: the label of the winning triangle's vertex with the largest
    barycentric (nearest vertex); 0 (background) where nothing is covered.

    ``vertex_labels``: ``(N,)`` shared or ``(M, N)`` per-mesh integer labels (e.g. the parse
    regions of docs/conventions.md, 1..9).
    """
    n = surface.num_vertices
    if vertex_labels.dim() not in (1, 2) or vertex_labels.shape[-1] != n:
        raise ValueError(f"vertex_labels must be (N={n},) or (M, N={n}), "
                         f"got {tuple(vertex_labels.shape)}")
    nearest = surface.nearest_vertex()
    if vertex_labels.dim() == 1:
        lab = vertex_labels[nearest]
    else:
        lab = vertex_labels.reshape(-1)[surface.mesh_index * n + nearest]
    b, h, w = surface.image_shape
    out = torch.zeros(b * h * w, dtype=torch.long, device=lab.device)
    out[surface.pixel_index] = lab.long()
    return out.view(b, h, w)
