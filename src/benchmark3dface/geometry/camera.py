"""Cameras: Deng's perspective camera, the global multi-face camera and weak perspective.

Conventions (docs/conventions.md): world frame x right, y up, z toward the camera; the
perspective camera sits at (0, 0, D) looking down -z; image pixels with a top-left origin,
u right, v down. Lengths in millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Deng'19 camera for a 224x224 crop: focal (px), principal point (px), distance (mm).
DENG_FOCAL_224 = 1015.0
DENG_IMAGE_SIZE = 224
DENG_DISTANCE_MM = 1000.0  # 10 decimetres in Deng's BFM units


@dataclass(frozen=True)
class PerspectiveCamera:
    """Pinhole camera at (0, 0, distance) looking down -z.

    ``project`` maps world-frame points (mm) to pixels ``(u, v)`` and a positive depth
    ``z_cam = distance - z`` (mm).
    """

    focal: float = DENG_FOCAL_224
    cx: float = DENG_IMAGE_SIZE / 2
    cy: float = DENG_IMAGE_SIZE / 2
    distance: float = DENG_DISTANCE_MM
    width: int = DENG_IMAGE_SIZE
    height: int = DENG_IMAGE_SIZE

    @classmethod
    def deng(cls, image_size: int = DENG_IMAGE_SIZE, distance: float = DENG_DISTANCE_MM) -> "PerspectiveCamera":
        """Deng's camera rescaled to a square image of ``image_size`` pixels (same field of view)."""
        s = image_size / DENG_IMAGE_SIZE
        return cls(DENG_FOCAL_224 * s, image_size / 2, image_size / 2, distance, image_size, image_size)

    @classmethod
    def global_image(cls, width: int, height: int, focal: float = DENG_FOCAL_224,
                     distance: float = DENG_DISTANCE_MM) -> "PerspectiveCamera":
        """WM3DR's global camera for a whole image: K = [[f,0,w/2],[0,f,h/2],[0,0,1]]."""
        return cls(focal, width / 2, height / 2, distance, width, height)

    def project(self, points: Tensor) -> Tensor:
        """(..., 3) world points (mm) -> (..., 3) = (u px, v px, depth mm)."""
        z = self.distance - points[..., 2]
        u = self.cx + self.focal * points[..., 0] / z
        v = self.cy - self.focal * points[..., 1] / z
        return torch.stack([u, v, z], -1)

    def unproject(self, uv: Tensor, depth: Tensor) -> Tensor:
        """Inverse of ``project``: pixels (..., 2) and depth (...) in mm -> world points (..., 3)."""
        x = (uv[..., 0] - self.cx) * depth / self.focal
        y = -(uv[..., 1] - self.cy) * depth / self.focal
        return torch.stack([x, y, self.distance - depth], -1)

    def ray_directions(self, device=None, dtype=torch.float32) -> Tensor:
        """(H, W, 3) unit ray directions through the pixel centres, world frame."""
        v, u = torch.meshgrid(torch.arange(self.height, device=device, dtype=dtype) + 0.5,
                              torch.arange(self.width, device=device, dtype=dtype) + 0.5, indexing="ij")
        d = torch.stack([(u - self.cx) / self.focal, -(v - self.cy) / self.focal, -torch.ones_like(u)], -1)
        return d / d.norm(dim=-1, keepdim=True)

    def translation_from_center(self, center: Tensor, delta: Tensor) -> Tensor:
        """WM3DR: face translation from a cell centre (cx, cy) px and predicted (dx, dy, dz).

        ``dz`` is the camera depth of the face origin (mm); ``t = [dz (dx + cx - w/2) / f,
        -dz (dy + cy - h/2) / f, D - dz]`` in this module's world frame (y up).
        """
        dz = delta[..., 2]
        tx = dz * (delta[..., 0] + center[..., 0] - self.cx) / self.focal
        ty = -dz * (delta[..., 1] + center[..., 1] - self.cy) / self.focal
        return torch.stack([tx, ty, self.distance - dz], -1)


@dataclass(frozen=True)
class WeakPerspectiveCamera:
    """Scaled orthographic projection: ``u = cx + s x + tx``, ``v = cy - (s y + ty)``.

    ``project`` takes world points (already rotated, mm), a scale ``s`` (px/mm, (...)) and a 2D
    translation (..., 2) in pixels, and returns (u, v, depth) with depth = -s*z (smaller is nearer,
    in pixel units) so that the renderer's z-buffer works unchanged.
    """

    width: int = 200
    height: int = 200

    @property
    def cx(self) -> float:
        return self.width / 2

    @property
    def cy(self) -> float:
        return self.height / 2

    def project(self, points: Tensor, scale: Tensor, translation: Tensor) -> Tensor:
        s = scale[..., None]
        u = self.cx + s * points[..., 0] + translation[..., None, 0]
        v = self.cy - (s * points[..., 1] + translation[..., None, 1])
        return torch.stack([u, v, -s * points[..., 2]], -1)
