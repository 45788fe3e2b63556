"""Reference depth maps by ray casting with open3d (for tests and benchmarks)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def pinhole_rays(height: int, width: int, focal: float, cx: float, cy: float,
                 distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Rays through the pixel centres of Deng's camera (docs/conventions.md).

    Returns ``rays (H, W, 6)`` float32 (origin xyz, direction xyz, world frame, mm) and
    ``dz (H, W)``, the camera-depth per unit ray parameter: with the direction
    ``((u - cx) / f, -(v - cy) / f, -1)`` (not normalised), ``t_hit`` *is* the camera depth,
    so ``dz`` is all ones; it is returned for callers that normalise directions.
    """
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    d = np.stack([(u - cx) / focal, -(v - cy) / focal, -np.ones_like(u)], -1)
    o = np.broadcast_to(np.array([0.0, 0.0, distance]), d.shape)
    return np.concatenate([o, d], -1).astype(np.float32), np.ones((height, width))


class RaycastDepth:
    """open3d ``RaycastingScene`` depth of one world-frame mesh for a pinhole camera.

    ``depth()`` returns camera depth ``(H, W)`` float64 in mm, ``+inf`` where no hit.
    """

    def __init__(self, verts: Tensor | np.ndarray, faces: Tensor | np.ndarray) -> None:
        import open3d as o3d

        v = np.ascontiguousarray(_np(verts), dtype=np.float32)
        f = np.ascontiguousarray(_np(faces), dtype=np.uint32)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))
        self._o3d = o3d

    def depth(self, rays: np.ndarray, dz: np.ndarray) -> np.ndarray:
        hit = self.scene.cast_rays(self._o3d.core.Tensor(rays))
        t = hit["t_hit"].numpy().astype(np.float64)
        return t * dz


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
