"""Closed-form initialisation of the lighting and the albedo before the photometric stage.

With the geometry fixed (after the landmark stage) the rendered colour of a covered pixel is
linear in the SH coefficients (for a fixed albedo) and linear in the albedo coefficients (for
fixed lighting)::

    I(p) ~ sum_v b_v(p) * albedo_v * (Y(n_v) . (gamma + dc))        (per colour channel)

so a few alternating weighted ridge least-squares solves (weights = coverage x skin attention)
give a good starting point for both, and the gradient stage needs far fewer steps. Squared
residuals are used here (the objective's robust L2,1 term is refined afterwards by the
optimiser). Everything runs without gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmark3dface.facemodel import MorphableModel
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.geometry.lighting import DENG_SH_INIT, sh_basis, sh_shading
from benchmark3dface.render import pixel_barycentrics, rasterize


def _normal_equations(design: Tensor, target: Tensor, weight: Tensor, image_of: Tensor, b: int
                      ) -> tuple[Tensor, Tensor]:
    """Per image sums ``A^T W A`` (B, K, K) and ``A^T W y`` (B, K) from rows ``design`` (R, K),
    ``target`` (R,), ``weight`` (R,) belonging to images ``image_of`` (R,)."""
    k = design.shape[-1]
    ata = design.new_zeros(b, k, k)
    atb = design.new_zeros(b, k)
    for i in range(b):  # one (K x R) @ (R x K) product per image: no (R, K, K) intermediate
        sel = (image_of == i).nonzero().squeeze(1)
        a = design.index_select(0, sel)
        wa = a * weight.index_select(0, sel)[:, None]
        ata[i] = wa.T @ a
        atb[i] = wa.T @ target.index_select(0, sel)
    return ata, atb


def _solve(ata: Tensor, atb: Tensor, ridge: Tensor | float) -> Tensor:
    k = ata.shape[-1]
    eye = torch.eye(k, dtype=ata.dtype, device=ata.device)
    ridge = torch.as_tensor(ridge, dtype=ata.dtype, device=ata.device)
    ridge = ridge.reshape(-1, 1, 1) if ridge.dim() > 0 else ridge
    return torch.linalg.solve(ata + ridge * eye + 1e-9 * eye, atb[..., None])[..., 0]


@torch.no_grad()
def init_appearance(coeffs: Tensor, model: MorphableModel, image: Tensor, attention: Tensor,
                    rounds: int = 1, sh_ridge: float = 1e-3, tex_ridge: float = 1e-3) -> Tensor:
    """Coefficients with the SH lighting (and the albedo, when the model has a basis) solved
    for the images, the other groups unchanged.

    Args:
        coeffs: (B, C) current coefficients (the pose and shape are used as they are).
        image: (B, 3, S, S) in [0, 1]; attention: (B, S, S) pixel weights (skin attention).
        rounds: alternations lighting -> albedo (then a last lighting solve).
        sh_ridge / tex_ridge: ridge weights relative to the mean squared residual per weighted
            pixel (a zero-mean prior on the SH offsets and on the albedo coefficients).
    Returns:
        (B, C) coefficients.
    """
    lay = model.layout
    if lay.sh != 27:
        return coeffs
    b, _, size, _ = image.shape
    geo = model.decode(coeffs, PerspectiveCamera.deng(size))
    frags = rasterize(geo.projected, model.triangles, size, cull_backfaces=True)
    surf = pixel_barycentrics(geo.projected, model.triangles, frags)
    if surf.pixel_index.numel() == 0:
        return coeffs
    img_of = surf.mesh_index
    pix = image.permute(0, 2, 3, 1).reshape(-1, 3).index_select(0, surf.pixel_index)  # (P, 3)
    w = attention.reshape(-1).index_select(0, surf.pixel_index)  # (P,)
    wsum = image.new_zeros(b).index_add_(0, img_of, w).clamp_min(1e-6)  # ridge scales with the pixel count
    y = sh_basis(geo.normals)  # (B, N, 9)
    p = lay.split(coeffs.clone())
    out = coeffs.clone()
    sh_sl, tex_sl = lay.slice("sh"), lay.slice("tex")
    dc = torch.zeros(9, dtype=image.dtype, device=image.device)
    dc[0] = DENG_SH_INIT
    albedo = geo.albedo
    gamma = p["sh"].reshape(b, 3, 9)
    for r in range(rounds + 1):
        # lighting: per channel, I = (albedo * Y) . (gamma + dc)
        design = surf.interpolate_covered((albedo[..., None] * y[:, :, None, :]).reshape(b, -1, 27)).view(-1, 3, 9)
        for c in range(3):
            target = pix[:, c] - design[:, c] @ dc
            ata, atb = _normal_equations(design[:, c], target, w, img_of, b)
            gamma[:, c] = _solve(ata, atb, sh_ridge * wsum)
        out[:, sh_sl] = gamma.reshape(b, 27)
        if r == rounds or lay.tex == 0:
            break
        # albedo: I = (mean + sum_k d_k T_k) * shading, linear in d
        shade = sh_shading(geo.normals, gamma.reshape(b, 27))  # (B, N, 3)
        k = lay.tex
        basis = model.albedo_basis.permute(1, 2, 0)  # (N, 3, K)
        design = surf.interpolate_covered((basis[None] * shade[..., None]).reshape(b, -1, 3 * k)).view(-1, 3, k)
        base = surf.interpolate_covered(model.mean_albedo[None] * shade)  # (P, 3)
        rows = design.reshape(-1, k)
        target = (pix - base).reshape(-1)
        ata, atb = _normal_equations(rows, target, w.repeat_interleave(3), img_of.repeat_interleave(3), b)
        delta = _solve(ata, atb, tex_ridge * wsum)
        out[:, tex_sl] = delta
        albedo = model.albedo(delta)
    return out
