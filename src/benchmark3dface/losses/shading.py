"""Shape-from-shading terms of Richardson'17 (FineNet): first-order spherical-harmonics
shading ``<l, Y(n)>`` with ``Y(n) = (1, nx, ny, nz)`` and the loss
``E_sh = ||rho * <l, Y(n)> - I||^2``, plus least-squares solvers for the lighting ``l`` and
the albedo ``rho``.

Images ``(B, C, H, W)`` in [0, 1] (C = 1 for Richardson's grayscale input); normals
``(B, 3, H, W)`` unit vectors in the camera-centred frame (x right, y up, z toward the viewer,
e.g. ``losses.depth.normals_from_depth``); masks ``(B, H, W)`` / ``(B, 1, H, W)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmark3dface.geometry.lighting import sh_basis_first_order

from .common import as_image_mask, check_shape


def _basis_map(normals: Tensor) -> Tensor:
    """``(B, 3, H, W)`` normals -> ``(B, 4, H, W)`` first-order SH basis."""
    check_shape("normals", normals, (None, 3, None, None))
    return sh_basis_first_order(normals.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _as_light(light: Tensor, channels: int) -> Tensor:
    """``(B, 4)`` (one light for all channels) or ``(B, C, 4)`` -> ``(B, C, 4)``."""
    if light.dim() == 2:
        check_shape("light", light, (None, 4))
        return light[:, None, :].expand(-1, channels, -1)
    check_shape("light", light, (None, None, 4))
    if light.shape[1] not in (1, channels):
        raise ValueError(f"light: {light.shape[1]} channels, image has {channels}")
    return light.expand(-1, channels, -1)


def sh1_shading(normals: Tensor, light: Tensor, channels: int | None = None) -> Tensor:
    """First-order SH shading ``<l, (1, nx, ny, nz)>``.

    Args:
        normals: ``(B, 3, H, W)`` unit normals.
        light: ``(B, 4)`` or ``(B, C, 4)`` coefficients.
        channels: output channels for a ``(B, 4)`` light (default 1).
    Returns:
        ``(B, C, H, W)`` shading (multiply by the albedo for the image).
    """
    y = _basis_map(normals)
    c = channels or (light.shape[1] if light.dim() == 3 else 1)
    return torch.einsum("bck,bkhw->bchw", _as_light(light, c).to(y.dtype), y)


def sfs_loss(image: Tensor, albedo: Tensor, normals: Tensor, light: Tensor,
             mask: Tensor | None = None) -> Tensor:
    """Richardson'17 shape-from-shading loss ``E_sh = ||rho <l, Y(n)> - I||^2`` as a masked
    mean over pixels and channels (image units squared).

    Args:
        image: ``(B, C, H, W)`` input image I.
        albedo: ``(B, C, H, W)`` or ``(B, 1, H, W)`` albedo rho.
        normals: ``(B, 3, H, W)`` unit normals of the predicted depth.
        light: ``(B, 4)`` / ``(B, C, 4)`` lighting (e.g. ``solve_sh_lighting``).
        mask: face pixels; None = all.
    """
    check_shape("image", image, (None, None, None, None))
    b, c, h, w = image.shape
    check_shape("albedo", albedo, (b, None, h, w))
    shading = sh1_shading(normals, light, c)
    m = as_image_mask(mask, image)
    r2 = (albedo * shading - image) ** 2
    return (r2 * m).sum() / (m.sum() * c).clamp_min(1e-12)


def _ridge(mat: Tensor, ridge: float) -> Tensor:
    k = mat.shape[-1]
    scale = mat.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    eye = torch.eye(k, dtype=mat.dtype, device=mat.device)
    return mat + ridge * scale[..., None, None] * eye


def solve_sh_lighting(image: Tensor, albedo: Tensor, normals: Tensor, mask: Tensor | None = None,
                      ridge: float = 1e-6) -> Tensor:
    """Least-squares first-order SH lighting per channel:
    ``argmin_l sum_i m_i (rho_i <l, Y(n_i)> - I_i)^2`` (Richardson: with the mean albedo on the
    coarse depth's normals).

    Args:
        image: ``(B, C, H, W)``.  albedo: ``(B, C|1, H, W)``.  normals: ``(B, 3, H, W)``.
        mask: pixels used; None = all.
        ridge: Tikhonov regularisation relative to the mean diagonal of the normal matrix.
    Returns:
        ``(B, C, 4)`` lighting coefficients; differentiable w.r.t. all inputs.
    """
    check_shape("image", image, (None, None, None, None))
    b, c, h, w = image.shape
    check_shape("albedo", albedo, (b, None, h, w))
    y = _basis_map(normals).to(image.dtype)  # (B,4,H,W)
    m = as_image_mask(mask, image)
    a = albedo.expand(b, c, h, w)[:, :, None] * y[:, None]  # (B,C,4,H,W)
    am = a * m[:, :, None]
    ata = torch.einsum("bckhw,bclhw->bckl", am, a)
    atb = torch.einsum("bckhw,bchw->bck", am, image)
    return torch.linalg.solve(_ridge(ata, ridge), atb.unsqueeze(-1)).squeeze(-1)


def solve_albedo_per_pixel(image: Tensor, shading: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-pixel least-squares albedo ``rho = I s / (s^2 + eps)`` for a known shading ``s``
    (``(B, C|1, H, W)``, e.g. ``sh1_shading``).  Returns ``(B, C, H, W)``."""
    check_shape("image", image, (None, None, None, None))
    return image * shading / (shading * shading + eps)


def solve_albedo_linear(image: Tensor, shading: Tensor, mean_albedo: Tensor, basis: Tensor,
                        mask: Tensor | None = None, ridge: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Least-squares albedo in a linear model ``rho = mu + sum_k c_k T_k`` (Richardson'17: 10
    texture coefficients): ``argmin_c sum_{i,ch} m_i (s (mu + T c) - I)^2``.

    Args:
        image: ``(B, C, H, W)``.  shading: ``(B, C|1, H, W)`` known shading ``<l, Y(n)>``.
        mean_albedo: ``(C, H, W)`` or ``(B, C, H, W)`` mean albedo image ``mu``.
        basis: ``(K, C, H, W)`` or ``(B, K, C, H, W)`` albedo basis images ``T_k``.
        mask: pixels used; None = all.
    Returns:
        ``(albedo (B, C, H, W), coeffs (B, K))``.
    """
    check_shape("image", image, (None, None, None, None))
    b, c, h, w = image.shape
    mu = mean_albedo.expand(b, c, h, w)
    t = basis if basis.dim() == 5 else basis[None]
    if t.shape[-3:] != (c, h, w):
        raise ValueError(f"basis: expected (..., K, {c}, {h}, {w}), got {tuple(basis.shape)}")
    t = t.expand(b, *t.shape[1:])
    s = shading.expand(b, c, h, w)
    m = as_image_mask(mask, image)
    a = s[:, None] * t  # (B,K,C,H,W)
    rhs = image - s * mu
    am = a * m[:, None]
    ata = torch.einsum("bkchw,blchw->bkl", am, a)
    atb = torch.einsum("bkchw,bchw->bk", am, rhs)
    coeffs = torch.linalg.solve(_ridge(ata, ridge), atb.unsqueeze(-1)).squeeze(-1)
    return mu + torch.einsum("bk,bkchw->bchw", coeffs, t), coeffs
