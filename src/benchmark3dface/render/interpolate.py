"""Differentiable barycentrics and attribute interpolation on top of :class:`Fragments`.

Like nvdiffrast's rasterize + interpolate: which triangle is visible at a pixel is a discrete
choice made by the (detached) rasterizer; the barycentric coordinates of the pixel centre in
that triangle are recomputed here from the screen-space vertex positions with autograd, so
gradients reach the vertex positions ``(u, v, depth)`` through the barycentrics and reach the
vertex attributes through the interpolation. There are no silhouette (visibility) gradients.
Only covered pixels are computed; background pixels get a constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from .fragments import Fragments
from .rasterize import barycentrics_at, covered_pixels, gather_triangles, winner_vertices


@dataclass(frozen=True)
class PixelBarycentrics:
    """The visible surface of the ``P`` covered pixels, differentiable w.r.t. the vertices.

    Attributes:
        pixel_index: ``(P,)`` long, flat index into ``(B, H, W)`` of each covered pixel.
        triangle_id: ``(P,)`` long, global id ``mesh * F + face`` of the visible triangle.
        faces: ``(F, 3)`` long, the shared faces.
        bary: ``(P, 3)`` barycentrics of the pixel centre (perspective-correct unless the
            fragments are orthographic), in the face's vertex order; carries gradients to the
            screen-space vertices when they require grad.
        depth: ``(P,)`` depth of the surface at the pixel centre (units of the input z).
        image_shape: ``(B, H, W)``.
        num_vertices: ``N``.

    ``mesh_index``, ``vertex_index`` and ``flat_vertex_index`` are decoded lazily (cached).
    """

    pixel_index: Tensor
    triangle_id: Tensor
    faces: Tensor
    bary: Tensor
    depth: Tensor
    image_shape: tuple[int, int, int]
    num_vertices: int

    @cached_property
    def _decoded(self) -> tuple[Tensor, Tensor]:
        return winner_vertices(self.faces, self.num_vertices, self.triangle_id)

    @property
    def mesh_index(self) -> Tensor:
        """``(P,)`` long, visible mesh (index into the ``M`` input meshes)."""
        return self._decoded[0]

    @property
    def vertex_index(self) -> Tensor:
        """``(P, 3)`` long, the visible triangle's vertex ids (into the ``N`` vertices of its
        mesh), in the order of its face."""
        return self._decoded[1]

    @cached_property
    def flat_vertex_index(self) -> Tensor:
        """``(3 P,)`` long: vertex k of every visible triangle (k-major) as an index into the
        ``M * N`` vertices of all meshes."""
        return _flat_index(self.mesh_index, self.vertex_index, self.num_vertices)

    def gather(self, attributes: Tensor) -> Tensor:
        """Per-vertex attributes of the winning triangles: ``(P, 3, C)`` (a view).

        ``attributes`` is ``(M, N, C)`` (per mesh) or ``(N, C)`` (shared by all meshes).
        """
        return self._gather_planar(attributes).permute(1, 0, 2)

    def _gather_planar(self, attributes: Tensor) -> Tensor:
        """``(3, P, C)``: attributes of vertex k of every winning triangle in row k."""
        n = self.num_vertices
        if attributes.dim() == 2 and attributes.shape[0] == n:
            idx = self.vertex_index.t().reshape(-1)
        elif attributes.dim() == 3 and attributes.shape[1] == n:
            idx = self.flat_vertex_index
        else:
            raise ValueError(f"vertex attributes must be (M, N={n}, C) or (N={n}, C), "
                             f"got {tuple(attributes.shape)}")
        c = attributes.shape[-1]
        return attributes.reshape(-1, c).index_select(0, idx).view(3, -1, c)

    def interpolate_covered(self, attributes: Tensor) -> Tensor:
        """Barycentric interpolation of vertex ``attributes`` at the covered pixels: ``(P, C)``."""
        a0, a1, a2 = self._gather_planar(attributes).unbind(0)
        b0, b1, b2 = self.bary.t().to(a0.dtype)[..., None].unbind(0)  # (P, 1) each
        return torch.addcmul(torch.addcmul(a0 * b0, a1, b1), a2, b2)

    def to_image(self, values: Tensor, background: float | Tensor = 0.0) -> Tensor:
        """Scatter per-covered-pixel ``values (P, C)`` into a ``(B, H, W, C)`` image.

        ``background`` is a scalar or a ``(C,)`` tensor. Differentiable w.r.t. ``values``.
        """
        b, h, w = self.image_shape
        c = values.shape[-1]
        out = values.new_empty(b * h * w, c)
        out[:] = torch.as_tensor(background, dtype=values.dtype, device=values.device)
        return out.index_copy(0, self.pixel_index, values).view(b, h, w, c)

    def interpolate(self, attributes: Tensor, background: float | Tensor = 0.0) -> Tensor:
        """``(B, H, W, C)`` image of interpolated vertex ``attributes`` (see :meth:`gather`)."""
        return self.to_image(self.interpolate_covered(attributes), background)

    def nearest_vertex(self) -> Tensor:
        """``(P,)`` long: the winning triangle's vertex with the largest barycentric."""
        k = self.bary.detach().argmax(1, keepdim=True)
        return self.vertex_index.gather(1, k).squeeze(1)


def _flat_index(mesh: Tensor, vidx: Tensor, n: int) -> Tensor:
    return (vidx + (mesh * n)[:, None]).t().reshape(-1)


def pixel_barycentrics(verts: Tensor, faces: Tensor, fragments: Fragments) -> PixelBarycentrics:
    """Recompute, with autograd, the barycentrics of the visible triangle at each covered pixel.

    Args:
        verts: ``(M, N, 3)`` screen-space vertices ``(u px, v px, depth)``, the same ones
            that were rasterized (docs/conventions.md); may require grad.
        faces: ``(F, 3)`` long, the shared faces.
        fragments: output of :func:`benchmark3dface.render.rasterize.rasterize`.

    When autograd is off or ``verts`` does not require grad, the rasterizer's barycentrics and
    depth are reused instead of recomputed (same values).
    """
    m, n, _ = verts.shape
    f = faces.shape[0]
    if m != fragments.num_meshes or f != fragments.faces_per_mesh:
        raise ValueError(f"fragments were rasterized from {fragments.num_meshes} meshes with "
                         f"{fragments.faces_per_mesh} faces, got verts {tuple(verts.shape)} and "
                         f"faces {tuple(faces.shape)}")
    faces = faces.long()
    pixel_index, px, py = covered_pixels(fragments.mask, verts.dtype)
    tri_id = fragments.pix_to_face.reshape(-1).index_select(0, pixel_index)
    shape = fragments.image_shape
    if not (torch.is_grad_enabled() and verts.requires_grad):
        # nothing to differentiate: reuse the rasterizer's values
        bary = fragments.bary.reshape(-1, 3).index_select(0, pixel_index).to(verts.dtype)
        depth = fragments.depth.reshape(-1).index_select(0, pixel_index).to(verts.dtype)
        return PixelBarycentrics(pixel_index, tri_id, faces, bary, depth, shape, n)
    mesh, vidx = winner_vertices(faces, n, tri_id)
    flat = _flat_index(mesh, vidx, n)
    bary, depth = barycentrics_at(gather_triangles(verts, flat), px, py, fragments.orthographic)
    surface = PixelBarycentrics(pixel_index, tri_id, faces, bary, depth, shape, n)
    # seed the cached properties (cached_property keeps its value in the instance __dict__)
    surface.__dict__.update(_decoded=(mesh, vidx), flat_vertex_index=flat)
    return surface


def interpolate(attributes: Tensor, verts: Tensor, faces: Tensor, fragments: Fragments,
                background: float | Tensor = 0.0) -> Tensor:
    """Interpolate vertex ``attributes`` ``(M, N, C)`` or ``(N, C)`` into ``(B, H, W, C)``.

    Differentiable w.r.t. ``attributes`` and the screen-space ``verts`` (through the
    recomputed barycentrics); ``background`` fills uncovered pixels.
    """
    return pixel_barycentrics(verts, faces, fragments).interpolate(attributes, background)
