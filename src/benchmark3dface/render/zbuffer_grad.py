"""Z-buffered depth with Richardson'17's rendering-layer gradient (Sec. 4.1, Eq. 7).

The forward pass is the rasterizer's z-buffer: pixel ``p`` covered by triangle ``(v1, v2, v3)``
with barycentrics ``(b1, b2, b3)`` has depth ``z(p) = sum_k b_k z_k``. Richardson et al. treat the
barycentrics (and the visibility) as constants of the backward pass, so

    dz(p) / dz_k = b_k        (Eq. 7)   and   dz(p) / d(u_k, v_k) = 0,

i.e. a depth gradient flows only to the depths of the winning triangle's three vertices, weighted
by the pixel's barycentrics. The project's default depth pass (``render_passes(..., ("depth",))``)
differentiates through the barycentrics too (screen-space motion moves the depth); this module
is the paper's cheaper, fixed-barycentric option. Orthographic (weak perspective) barycentrics
make it exact for in-plane-fixed vertices; with perspective-correct barycentrics it is the same
first-order rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .fragments import Fragments
from .rasterize import rasterize


class _FixedBarycentricDepth(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, vidx: Tensor, bary: Tensor, pixel: Tensor, size: int, background: float):
        # z (M*N,) flat vertex depths; vidx (P, 3) flat vertex ids; bary (P, 3); pixel (P,)
        depth = (bary.to(z.dtype) * z[vidx]).sum(-1)
        out = z.new_full((size,), background)
        out[pixel] = depth
        ctx.save_for_backward(vidx, bary, pixel)
        ctx.num = z.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        vidx, bary, pixel = ctx.saved_tensors
        g = grad[pixel][:, None] * bary.to(grad.dtype)  # Eq. 7: dz(p)/dz_k = b_k
        gz = grad.new_zeros(ctx.num).index_add_(0, vidx.reshape(-1), g.reshape(-1))
        return gz, None, None, None, None, None


def zbuffer_depth(verts: Tensor, faces: Tensor, image_size: int | Sequence[int], *,
                  fragments: Fragments | None = None, orthographic: bool = True,
                  cull_backfaces: bool = True, background: float = float("nan")) -> Tensor:
    """``(M, N, 3)`` screen-space meshes ``(u px, v px, depth)`` -> ``(M, H, W)`` z-buffered depth,
    differentiable w.r.t. the vertex *depths* only, with Eq. 7's fixed-barycentric gradient.

    Args:
        verts, faces, image_size, orthographic, cull_backfaces: as for ``render.rasterize``
            (one image per mesh).
        fragments: a rasterization of these meshes to reuse (default: rasterized here).
        background: value off the mesh (NaN, as ``Sample.depth``).
    """
    faces = faces.long()
    frags = fragments or rasterize(verts, faces, image_size, cull_backfaces=cull_backfaces,
                                   orthographic=orthographic)
    b, h, w = frags.image_shape
    m, n, _ = verts.shape
    if b != m:
        raise ValueError(f"zbuffer_depth renders one image per mesh: {m} meshes, {b} images")
    mask = frags.mask.reshape(-1)
    pixel = mask.nonzero().squeeze(1)
    tri = frags.pix_to_face.reshape(-1)[pixel]
    mesh = torch.div(tri, frags.faces_per_mesh, rounding_mode="floor")
    vidx = faces[tri % frags.faces_per_mesh] + (mesh * n)[:, None]
    bary = frags.bary.reshape(-1, 3)[pixel]
    out = _FixedBarycentricDepth.apply(verts[..., 2].reshape(-1), vidx, bary, pixel, b * h * w, float(background))
    return out.view(b, h, w)
