"""Cameras: Deng's perspective camera, the global multi-face camera and weak perspective.

Conventions (docs/conventions.md): world frame x right, y up, z toward the camera; the
perspective camera sits at (0, 0, D) looking down -z; image pixels with a top-left origin,
u right, v down. Lengths in millimetres.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    in pixel units) so that the renderer's z-buffer works unchanged. ``screen`` returns the same
    (u, v) with the depth in millimetres, ``-z_world``: the synthetic engine's convention for
    ``Sample.depth`` under weak perspective (docs/conventions.md).

    The principal point is the image centre ``(width / 2, height / 2)`` unless ``principal``
    is given.
    """

    width: int = 200
    height: int = 200
    principal: tuple[float, float] | None = None

    @property
    def cx(self) -> float:
        return self.width / 2 if self.principal is None else float(self.principal[0])

    @property
    def cy(self) -> float:
        return self.height / 2 if self.principal is None else float(self.principal[1])

    def project(self, points: Tensor, scale: Tensor, translation: Tensor) -> Tensor:
        s = scale[..., None]
        u = self.cx + s * points[..., 0] + translation[..., None, 0]
        v = self.cy - (s * points[..., 1] + translation[..., None, 1])
        return torch.stack([u, v, -s * points[..., 2]], -1)

    def screen(self, points: Tensor, scale: Tensor, translation: Tensor) -> Tensor:
        """(..., N, 3) rotated points (mm), scale (...) px/mm, translation (..., 2) px ->
        (..., N, 3) = (u px, v px, -z_world mm): the renderer's screen-space mesh (rasterize
        with ``orthographic=True``) whose depth pass is the weak-perspective ``Sample.depth``."""
        uv = self.project(points, scale, translation)
        return torch.cat([uv[..., :2], -points[..., 2:3]], -1)


#: camera-dictionary spellings of the two projections (``Sample.camera`` from the synthetic
#: engine uses ``"type"``, ``FaceReconstruction.camera`` uses ``"kind"``; docs/conventions.md)
_KINDS = {"perspective": "perspective", "weak": "weak", "weak_perspective": "weak"}


def camera_kind(camera: Mapping[str, Any] | None) -> str | None:
    """``"perspective"``, ``"weak"`` or None (no or unknown kind) for a camera dictionary in
    either spelling: ``{"kind": "perspective" | "weak", ...}`` or the synthetic engine's
    ``{"type": "perspective" | "weak_perspective", ...}``."""
    if not camera:
        return None
    return _KINDS.get(str(camera.get("kind", camera.get("type", ""))))


def camera_principal(camera: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(cx, cy)`` px from a camera dictionary (``principal`` or ``cx`` / ``cy``), or None."""
    if "principal" in camera and camera["principal"] is not None:
        cx, cy = (float(c) for c in camera["principal"])
        return cx, cy
    if "cx" in camera and "cy" in camera:
        return float(camera["cx"]), float(camera["cy"])
    return None


def perspective_from_dict(camera: Mapping[str, Any], width: int, height: int,
                          fallback: Mapping[str, Any] | None = None) -> PerspectiveCamera:
    """A :class:`PerspectiveCamera` from a camera dictionary (``focal`` px, ``principal`` or
    ``cx``/``cy`` px, ``distance`` mm), missing entries taken from ``fallback`` (e.g. the
    sample's camera), then the image centre / ``DENG_DISTANCE_MM``. Raises ``ValueError`` when
    no focal length is known."""
    fb = fallback or {}
    focal = camera.get("focal", fb.get("focal"))
    if focal is None:
        raise ValueError("perspective camera without a focal length")
    c = camera_principal(camera) or camera_principal(fb) or (width / 2, height / 2)
    dist = float(camera.get("distance", fb.get("distance", DENG_DISTANCE_MM)))
    return PerspectiveCamera(float(focal), c[0], c[1], dist, int(width), int(height))
