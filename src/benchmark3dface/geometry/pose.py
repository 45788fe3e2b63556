"""Rigid pose from 2D landmarks (perspective PnP by batched least squares).

Used by the mean-face baseline and to initialise optimisation fitting.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .camera import PerspectiveCamera
from .rotation import euler_to_matrix, rotate


def _reprojection(angles: Tensor, trans: Tensor, points3d: Tensor, camera: PerspectiveCamera) -> Tensor:
    return camera.project(rotate(points3d, euler_to_matrix(angles), trans))[..., :2]


def fit_pose_to_landmarks(points3d: Tensor, points2d: Tensor, camera: PerspectiveCamera,
                          weights: Tensor | None = None, iterations: int = 30,
                          yaw_inits: tuple[float, ...] = (-60.0, 0.0, 60.0)) -> tuple[Tensor, Tensor, Tensor]:
    """Euler angles and translation placing model points on their 2D observations.

    Minimises the weighted squared reprojection error of ``R(angles) @ X + t`` under the
    perspective ``camera`` with batched Levenberg-Marquardt (float64), from several yaw
    initialisations (profiles), keeping the best per sample.

    Args:
        points3d: (B, K, 3) model-frame points, mm (e.g. the mean face's landmarks).
        points2d: (B, K, 2) observed pixels.
        weights: (B, K) optional non-negative weights (0 for missing landmarks).
    Returns:
        angles (B, 3) radians, translation (B, 3) mm, weighted rms reprojection error (B,) pixels.
    """
    b, k, _ = points3d.shape
    dtype, dev = torch.float64, points3d.device
    x3 = points3d.detach().to(dtype)
    x2 = points2d.detach().to(dtype)
    w = torch.ones(b, k, dtype=dtype, device=dev) if weights is None else weights.detach().to(dtype)
    wn = w / w.sum(-1, keepdim=True).clamp_min(1e-9)
    # initial translation: centroid ray and depth from the 2D / 3D spread ratio
    c2 = (wn[..., None] * x2).sum(1)
    c3 = (wn[..., None] * x3).sum(1)
    s2 = ((wn * ((x2 - c2[:, None]) ** 2).sum(-1)).sum(-1)).sqrt()
    s3 = ((wn * ((x3[..., :2] - c3[:, None, :2]) ** 2).sum(-1)).sum(-1)).sqrt()
    depth = camera.focal * s3 / s2.clamp_min(1e-6)
    t0 = camera.unproject(c2, depth) - c3
    n_init = len(yaw_inits)
    angles = torch.zeros(n_init, b, 3, dtype=dtype, device=dev)
    angles[..., 1] = torch.tensor([math.radians(y) for y in yaw_inits], dtype=dtype, device=dev)[:, None]
    params = torch.cat([angles.reshape(-1, 3), t0.repeat(n_init, 1)], -1)  # (n_init*B, 6)
    X = x3.repeat(n_init, 1, 1)
    Y = x2.repeat(n_init, 1, 1)
    sw = wn.repeat(n_init, 1).sqrt()

    def residual(p: Tensor, x: Tensor, y: Tensor, s: Tensor) -> Tensor:
        proj = _reprojection(p[:3], p[3:], x, camera)
        return ((proj - y) * s[:, None]).reshape(-1)

    jac = torch.func.vmap(torch.func.jacfwd(residual))
    res = torch.func.vmap(residual)
    lam = torch.full((params.shape[0],), 1e-3, dtype=dtype, device=dev)
    r = res(params, X, Y, sw)
    cost = (r ** 2).sum(-1)
    eye = torch.eye(6, dtype=dtype, device=dev)
    for _ in range(iterations):  # Levenberg-Marquardt, one 6x6 solve per problem
        J = jac(params, X, Y, sw)
        jtj = J.transpose(1, 2) @ J
        jtr = (J.transpose(1, 2) @ r[..., None])[..., 0]
        diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-9)
        step = torch.linalg.solve(jtj + lam[:, None, None] * torch.diag_embed(diag) + 1e-12 * eye, -jtr)
        cand = params + step
        r_new = res(cand, X, Y, sw)
        cost_new = (r_new ** 2).sum(-1)
        better = cost_new < cost
        params = torch.where(better[:, None], cand, params)
        r = torch.where(better[:, None], r_new, r)
        cost = torch.where(better, cost_new, cost)
        lam = torch.where(better, lam * 0.3, lam * 10).clamp(1e-9, 1e9)
        if float(step.abs().max()) < 1e-10:
            break
    err = cost.reshape(n_init, b)
    best = err.argmin(0)
    idx = best * b + torch.arange(b, device=dev)
    a = params[idx, :3]
    t = params[idx, 3:]
    rms = err.min(0).values.clamp_min(0).sqrt()
    return a.to(points3d.dtype), t.to(points3d.dtype), rms.to(points3d.dtype)
