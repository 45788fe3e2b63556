"""Spherical-harmonics lighting (Lambertian), Deng's constants.

Second order (9 bands) per RGB channel, 27 coefficients laid out ``[r0..r8, g0..g8, b0..b8]``;
``init_dc`` (0.8 in Deng's code) is added to each colour's first coefficient so that zero
coefficients give ambient white light. The basis is evaluated on unit normals in the world
(camera) frame with the sign pattern of Deng's public code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi))
DENG_SH_INIT = 0.8


def sh_basis(normals: Tensor, dim: int = -1) -> Tensor:
    """(..., 3) unit normals -> (..., 9) irradiance basis Y (Deng's a_k c_k scaling included);
    ``dim=0`` stacks the 9 functions first: (9, ...) contiguous planes."""
    x, y, z = normals.unbind(-1)
    if dim == 0:
        x, y, z = (t.contiguous() for t in (x, y, z))
    a0c0 = SH_A[0] * SH_C[0]
    a1c1 = SH_A[1] * SH_C[1]
    a2c2 = SH_A[2] * SH_C[2]
    return torch.stack([
        torch.full_like(x, a0c0),
        -a1c1 * y,
        a1c1 * z,
        -a1c1 * x,
        a2c2 * x * y,
        -a2c2 * y * z,
        a2c2 * 0.5 / math.sqrt(3.0) * (3 * z * z - 1),
        -a2c2 * x * z,
        a2c2 * 0.5 * (x * x - y * y),
    ], dim)


def sh_shading(normals: Tensor, gamma: Tensor, init_dc: float = DENG_SH_INIT) -> Tensor:
    """Irradiance per vertex.

    Args:
        normals: (B, N, 3) unit normals, world frame.
        gamma: (B, 27) SH coefficients ``[r0..r8, g0..g8, b0..b8]``.
    Returns:
        (B, N, 3) RGB irradiance; multiply by albedo for the vertex colour.
    """
    g = gamma.reshape(*gamma.shape[:-1], 3, 9)
    g = g + torch.tensor([init_dc] + [0.0] * 8, dtype=g.dtype, device=g.device)
    y = sh_basis(normals)  # (B,N,9)
    return torch.einsum("bnk,bck->bnc", y, g)


def sh_color(albedo: Tensor, normals: Tensor, gamma: Tensor, init_dc: float = DENG_SH_INIT) -> Tensor:
    """Lambertian vertex colour ``albedo * (Y . gamma)`` (all (B, N, 3))."""
    return albedo * sh_shading(normals, gamma, init_dc)


def sh_basis_first_order(normals: Tensor) -> Tensor:
    """Richardson'17's first-order basis Y(n) = (1, nx, ny, nz): (..., 3) -> (..., 4)."""
    return torch.cat([torch.ones_like(normals[..., :1]), normals], -1)
