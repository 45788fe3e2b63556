"""Depth maps of posed meshes: the z-buffer of the rasterizer as ``(H, W)`` millimetres.

The depth is the screen-space ``z`` of the mesh (docs/conventions.md): the camera depth
``D - z_world`` (mm) for Deng's perspective camera, ``-z_world`` (mm) for weak perspective
(``WeakPerspectiveCamera.screen``) -- the conventions of ``Sample.depth``. Pixels the mesh does
not cover are NaN. Back faces are culled, as in the synthetic engine, so rendering a GT mesh
with the GT camera reproduces the engine's depth map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..geometry.camera import PerspectiveCamera, WeakPerspectiveCamera
from .rasterize import rasterize


def mesh_depth_map(screen: Tensor, faces: Tensor, image_size: int | Sequence[int], *,
                   orthographic: bool, cull_backfaces: bool = True) -> Tensor:
    """``(M, N, 3)`` screen-space meshes ``(u px, v px, depth)`` -> ``(M, H, W)`` depth maps
    (the units of the input depth, NaN off the mesh); one image per mesh. Not differentiable
    (the z-buffer's depth; use ``render_passes(..., ("depth",))`` for gradients)."""
    with torch.no_grad():
        frags = rasterize(screen, faces.long(), image_size, cull_backfaces=cull_backfaces,
                          orthographic=orthographic)
        depth = frags.depth.clone()
        depth[~frags.mask] = float("nan")
    return depth


def perspective_depth_map(world: Tensor, faces: Tensor, camera: PerspectiveCamera) -> Tensor:
    """``(N, 3)`` world-frame vertices (mm) seen by a perspective camera -> ``(H, W)`` camera
    depth ``D - z_world`` (mm), NaN off the mesh; image size = the camera's."""
    screen = camera.project(world.reshape(-1, world.shape[-2], 3))
    return mesh_depth_map(screen, faces, (camera.height, camera.width), orthographic=False)[0]


def weak_depth_map(rotated: Tensor, faces: Tensor, camera: WeakPerspectiveCamera, scale: float | Tensor,
                   translation: Sequence[float] | Tensor = (0.0, 0.0)) -> Tensor:
    """``(N, 3)`` rotated vertices ``R v`` (mm) under weak perspective (``scale`` px/mm,
    ``translation`` (tx, ty) px) -> ``(H, W)`` depth ``-z_world`` (mm), NaN off the mesh."""
    pts = rotated.reshape(1, -1, 3)
    s = torch.as_tensor(scale, dtype=pts.dtype, device=pts.device).reshape(1)
    t = torch.as_tensor(translation, dtype=pts.dtype, device=pts.device).reshape(1, 2)
    screen = camera.screen(pts, s, t)
    return mesh_depth_map(screen, faces, (camera.height, camera.width), orthographic=True)[0]
