"""The rasterizer's output record (the analogue of pytorch3d's ``Fragments``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Fragments:
    """Per-pixel visibility of a batch of screen-space meshes (one winner per pixel).

    Attributes:
        pix_to_face: ``(B, H, W)`` long. Global triangle id ``mesh * faces_per_mesh + face``
            of the nearest triangle whose interior covers the pixel centre; ``-1`` on background.
            ``mesh`` indexes the ``M`` input meshes, ``face`` the shared ``(F, 3)`` faces.
        bary: ``(B, H, W, 3)`` barycentric coordinates of the pixel centre in the winning
            triangle, perspective-correct unless rasterized with ``orthographic=True``; zeros on
            background. Detached (the visibility pass is not differentiable); use
            :func:`benchmark3dface.render.interpolate.pixel_barycentrics` for gradients.
        depth: ``(B, H, W)`` depth of the visible surface in the units of the input ``z``
            (camera depth in mm for the Deng camera); ``+inf`` on background. Detached.
        faces_per_mesh: ``F``, the number of shared faces (decodes ``pix_to_face``).
        num_meshes: ``M``, the number of meshes that were rasterized.
        orthographic: whether the barycentrics are affine (weak perspective) rather than
            perspective-correct; the differentiable interpolation follows the same choice.

    Pixel ``(b, i, j)`` is image ``b``, row ``i`` (v down), column ``j`` (u right); its centre is
    ``(u, v) = (j + 0.5, i + 0.5)`` (docs/conventions.md).
    """

    pix_to_face: Tensor
    bary: Tensor
    depth: Tensor
    faces_per_mesh: int
    num_meshes: int
    orthographic: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(B, H, W)``."""
        b, h, w = self.pix_to_face.shape
        return int(b), int(h), int(w)

    @property
    def mask(self) -> Tensor:
        """``(B, H, W)`` bool, True where a triangle covers the pixel centre."""
        return self.pix_to_face >= 0

    def mesh_index(self) -> Tensor:
        """``(B, H, W)`` long: index of the visible mesh, ``-1`` on background."""
        return torch.where(self.mask, torch.div(self.pix_to_face, self.faces_per_mesh,
                                                rounding_mode="floor"), -1)

    def face_index(self) -> Tensor:
        """``(B, H, W)`` long: index into the shared ``(F, 3)`` faces, ``-1`` on background."""
        return torch.where(self.mask, self.pix_to_face % self.faces_per_mesh, -1)
