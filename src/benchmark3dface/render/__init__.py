"""Differentiable mesh renderer in plain PyTorch (CPU and CUDA) + shading passes.

Pipeline: screen-space meshes ``(M, N, 3)`` -> :func:`rasterize` (detached z-buffer
visibility, :class:`Fragments`) -> :func:`pixel_barycentrics` (differentiable barycentrics of
the visible triangles) -> passes in :mod:`.shading`. :func:`render_passes` /
:class:`MeshRenderer` do it in one call. See docs/renderer.md.
"""

from .fragments import Fragments
from .interpolate import PixelBarycentrics, interpolate, pixel_barycentrics
from .pytorch3d_backend import pytorch3d_available
from .rasterize import BACKENDS, rasterize
from .renderer import PASSES, MeshRenderer, render_passes
from .shading import (
                      pncc_code,
                      render_depth,
                      render_labels,
                      render_mask,
                      render_normals,
                      render_pncc,
                      render_rgb,
)

__all__ = [
    "BACKENDS", "PASSES", "Fragments", "MeshRenderer", "PixelBarycentrics", "interpolate",
    "pixel_barycentrics", "pncc_code", "pytorch3d_available", "rasterize", "render_depth",
    "render_labels", "render_mask", "render_normals", "render_passes", "render_pncc",
    "render_rgb",
]
