"""Differentiable mesh renderer in plain PyTorch (CPU and CUDA) + shading passes.

Pipeline: screen-space meshes ``(M, N, 3)`` -> :func:`rasterize` (detached z-buffer
visibility, :class:`Fragments`) -> :func:`pixel_barycentrics` (differentiable barycentrics of
the visible triangles) -> passes in :mod:`.shading`. :func:`render_passes` /
:class:`MeshRenderer` do it in one call; :mod:`.depthmap` gives z-buffer depth maps (mm, NaN
off the mesh) of posed meshes. See docs/renderer.md.
"""

from .depthmap import mesh_depth_map, perspective_depth_map, weak_depth_map
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
    "mesh_depth_map", "perspective_depth_map", "pixel_barycentrics", "pncc_code",
    "pytorch3d_available", "rasterize", "render_depth", "render_labels", "render_mask", "render_normals", "render_passes", "render_pncc",
    "render_rgb", "weak_depth_map",
]
