"""Euler angles <-> rotation matrices in Deng's convention.

Angles ``(alpha, beta, gamma)`` in radians are rotations about x (pitch), y (yaw) and z (roll);
the rotation applied to model-frame column vectors is ``R = Rz(gamma) @ Ry(beta) @ Rx(alpha)``
(``v_world = R @ v_model + t``). With the model frame of docs/conventions.md (y up, z toward a
frontal camera): Ry(yaw) maps +z to (sin yaw, 0, cos yaw), so a positive yaw turns the nose
toward the viewer's right (+x); Rx(pitch) maps +z to (0, -sin pitch, cos pitch), so a positive
pitch tilts the nose down.
"""

from __future__ import annotations

import torch
from torch import Tensor


def euler_to_matrix(angles: Tensor) -> Tensor:
    """(..., 3) Euler angles (pitch, yaw, roll) in radians -> (..., 3, 3) rotation R = Rz Ry Rx."""
    a, b, g = angles.unbind(-1)
    ca, sa = torch.cos(a), torch.sin(a)
    cb, sb = torch.cos(b), torch.sin(b)
    cg, sg = torch.cos(g), torch.sin(g)
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rx = torch.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cb, zero, sb, zero, one, zero, -sb, zero, cb], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cg, -sg, zero, sg, cg, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


def matrix_to_euler(rot: Tensor) -> Tensor:
    """(..., 3, 3) rotation -> (..., 3) Euler angles (pitch, yaw, roll) with R = Rz Ry Rx.

    The yaw is returned in [-pi/2, pi/2]; at the gimbal lock (|yaw| = pi/2) the roll is set to 0.
    """
    r20 = rot[..., 2, 0].clamp(-1.0, 1.0)
    beta = -torch.asin(r20)
    cb = torch.cos(beta)
    ok = cb.abs() > 1e-6
    alpha = torch.where(ok, torch.atan2(rot[..., 2, 1], rot[..., 2, 2]), torch.atan2(-rot[..., 1, 2], rot[..., 1, 1]))
    gamma = torch.where(ok, torch.atan2(rot[..., 1, 0], rot[..., 0, 0]), torch.zeros_like(beta))
    return torch.stack([alpha, beta, gamma], -1)


def rotate(vertices: Tensor, rot: Tensor, translation: Tensor | None = None) -> Tensor:
    """Apply ``R v + t`` to (..., N, 3) vertices with (..., 3, 3) R and (..., 3) t."""
    out = vertices @ rot.transpose(-1, -2)
    if translation is not None:
        out = out + translation.unsqueeze(-2)
    return out
