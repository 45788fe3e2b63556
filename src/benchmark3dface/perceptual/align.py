"""Differentiable 5-point face alignment for identity encoders.

Face-recognition networks expect a face warped so that its 5 points (eye centres, nose tip,
mouth corners; Deng's order, viewer's left first, docs/conventions.md) land on a fixed template.
Here the warp is a least-squares 2D similarity (rotation, isotropic scale, translation) applied
with ``grid_sample``, so gradients flow from the embedding back to the input image (the
perceptual loss back-propagates through the rendered face).

Pixel coordinates follow docs/conventions.md: continuous, top-left origin, the centre of pixel
(row i, column j) at ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The 5-point template of insightface's arcface_torch for 112x112 crops, converted from its
#: integer-centred pixel convention to ours (+0.5 px). Order: left eye, right eye, nose tip,
#: left mouth corner, right mouth corner (viewer's left first).
ARCFACE_TEMPLATE_112 = torch.tensor([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041],
]) + 0.5


def template_for(size: int, base: Tensor = ARCFACE_TEMPLATE_112, base_size: int = 112) -> Tensor:
    """The template scaled to a ``size`` x ``size`` crop, (5, 2) pixels."""
    return base * (float(size) / float(base_size))


def similarity_2d(src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares 2D similarity ``dst ~ A src + t`` (A = s R), batched.

    Closed form with complex numbers: ``a = sum (d_c conj(s_c)) / sum |s_c|^2`` on centred points.

    Args:
        src, dst: (B, K, 2) corresponding points (K >= 2).
    Returns:
        A (B, 2, 2), t (B, 2).
    """
    if src.shape != dst.shape or src.dim() != 3 or src.shape[-1] != 2:
        raise ValueError(f"similarity_2d: src and dst must both be (B, K, 2), got {tuple(src.shape)} and {tuple(dst.shape)}")
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s, d = src - ms, dst - md
    den = (s ** 2).sum((1, 2)).clamp_min(1e-12)
    a = ((d[..., 0] * s[..., 0] + d[..., 1] * s[..., 1]).sum(1)) / den  # real part
    b = ((d[..., 1] * s[..., 0] - d[..., 0] * s[..., 1]).sum(1)) / den  # imaginary part
    A = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    t = md[:, 0] - (A @ ms[:, 0, :, None])[..., 0]
    return A, t


def warp_to_template(images: Tensor, lm5: Tensor, template: Tensor, out_size: int) -> Tensor:
    """Warp each image so that its 5 points land on ``template`` in an ``out_size`` crop.

    Args:
        images: (B, C, H, W) float.
        lm5: (B, 5, 2) pixels in the input images.
        template: (5, 2) pixels in the output crop.
        out_size: side of the square output.
    Returns:
        (B, C, out_size, out_size), bilinear, zeros outside the input; differentiable w.r.t.
        ``images`` (and ``lm5``).
    """
    b, _, h, w = images.shape
    if lm5.shape != (b, 5, 2):
        raise ValueError(f"lm5 must be ({b}, 5, 2), got {tuple(lm5.shape)}")
    tpl = template.to(images).expand(b, 5, 2)
    # output pixel -> input pixel
    A, t = similarity_2d(tpl, lm5.to(images))
    so = out_size / 2.0
    scale_in = torch.tensor([w / 2.0, h / 2.0], dtype=images.dtype, device=images.device)
    # x_in_n = (A (so (x_out_n + 1)) + t) / scale_in - 1
    theta_a = A * so / scale_in[None, :, None]
    theta_t = ((A @ torch.full((b, 2, 1), so, dtype=images.dtype, device=images.device))[..., 0] + t) / scale_in - 1.0
    theta = torch.cat([theta_a, theta_t[..., None]], -1)
    grid = F.affine_grid(theta, [b, images.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def resize_square(images: Tensor, out_size: int) -> Tensor:
    """Resize (B, C, H, W) to (B, C, out_size, out_size) (bilinear, anti-aliased when shrinking)."""
    if images.shape[-2:] == (out_size, out_size):
        return images
    shrink = images.shape[-1] > out_size or images.shape[-2] > out_size
    return F.interpolate(images, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=shrink)
