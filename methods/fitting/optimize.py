"""Staged, batched optimisation of morphable-model coefficients (one problem per image).

The optimiser works on *normalised* parameters ``p = coeffs / scale`` with one scale per
coefficient group (:data:`PARAM_SCALES`: 1 for the N(0, 1) identity / expression / albedo
coefficients, 0.1 rad for the angles, 0.5 for SH, 10 mm for the translation), so that one
learning rate moves every group by a comparable amount. A stage frees some groups (the others
are held fixed) and minimises the sum over images of the per-image objective; with Adam (the
default, element-wise) the images' problems are exactly independent, with L-BFGS they share the
step length of the line search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark3dface.facemodel import CoeffLayout

#: coefficient = scale x optimisation parameter, per group
PARAM_SCALES: dict[str, float] = {"id": 1.0, "exp": 1.0, "tex": 1.0, "angles": 0.1, "sh": 0.5, "trans": 10.0}
OPTIMIZERS = ("adam", "lbfgs")


@dataclass(frozen=True)
class Stage:
    """One optimisation stage.

    Attributes:
        name: label (``landmarks`` / ``photometric`` by default).
        groups: coefficient groups that move (see ``CoeffLayout``: id, exp, tex, angles, sh, trans).
        iterations: Adam steps (L-BFGS: most iterations); 0 skips the stage.
        lr: learning rate in normalised units (Adam; cosine-decayed to ``lr * final_lr_ratio``),
            ignored by L-BFGS (unit step + strong-Wolfe line search).
        photometric: whether the stage renders and uses the image terms (photo); otherwise only
            the landmarks (and the coefficient regulariser) are used, without rendering.
    """

    name: str
    groups: tuple[str, ...]
    iterations: int
    lr: float
    photometric: bool

    def __post_init__(self) -> None:
        bad = [g for g in self.groups if g not in PARAM_SCALES]
        if bad:
            raise ValueError(f"stage {self.name!r}: unknown coefficient groups {bad}; known: {sorted(PARAM_SCALES)}")
        if self.iterations < 0 or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"stage {self.name!r}: iterations must be >= 0 and lr > 0, got "
                             f"{self.iterations}, {self.lr}")


def scale_vector(layout: CoeffLayout, device=None, dtype=torch.float32) -> Tensor:
    """(layout.size,) per-coefficient scale (see :data:`PARAM_SCALES`)."""
    parts = {g: torch.full((getattr(layout, g),), PARAM_SCALES[g], dtype=dtype, device=device)
             for g in PARAM_SCALES}
    return layout.join(parts)


def group_mask(layout: CoeffLayout, groups: Sequence[str], device=None, dtype=torch.float32) -> Tensor:
    """(layout.size,) 1 on the coefficients of ``groups``, 0 elsewhere."""
    parts = {g: torch.full((getattr(layout, g),), float(g in groups), dtype=dtype, device=device)
             for g in PARAM_SCALES}
    return layout.join(parts)


#: objective(coeffs (B, C)) -> per-image losses (B,)
Objective = Callable[[Tensor], Tensor]


def run_stage(coeffs: Tensor, objective: Objective, stage: Stage, layout: CoeffLayout, optimizer: str = "adam",
              final_lr_ratio: float = 0.1, keep_best: bool = True,
              project: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Minimise ``objective`` over the stage's groups, starting from ``coeffs`` (B, C).

    Args:
        project: optional map applied to the coefficients after every step (e.g. clamping
            blendshape weights to [0, 1]).
        keep_best: (Adam) return, per image, the best coefficients seen (the objective is
            evaluated before each step, so the best of the visited points).
    Returns:
        (coefficients (B, C) detached, per-image objective (B,) at the returned coefficients;
        NaN where it was not evaluated, i.e. when the stage has 0 iterations).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    b = coeffs.shape[0]
    nan = coeffs.new_full((b,), float("nan"))
    if stage.iterations == 0 or not stage.groups:
        return coeffs.detach(), nan
    scale = scale_vector(layout, coeffs.device, coeffs.dtype)
    free = group_mask(layout, stage.groups, coeffs.device, coeffs.dtype)
    fixed = coeffs.detach() * (1 - free)
    param = (coeffs.detach() / scale).clone().requires_grad_(True)

    def to_coeffs(p: Tensor) -> Tensor:
        return p * scale * free + fixed

    if optimizer == "lbfgs":
        return _lbfgs(param, to_coeffs, objective, stage, project)
    opt = torch.optim.Adam([param], lr=stage.lr)
    best = coeffs.detach().clone()
    best_loss = coeffs.new_full((b,), float("inf"))
    for it in range(stage.iterations):
        # cosine decay from lr to lr * final_lr_ratio
        frac = it / max(1, stage.iterations - 1)
        for grp in opt.param_groups:
            grp["lr"] = stage.lr * (final_lr_ratio + (1 - final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
        opt.zero_grad(set_to_none=True)
        c = to_coeffs(param)
        per_image = objective(c)
        per_image.sum().backward()
        with torch.no_grad():
            better = torch.isfinite(per_image) & (per_image < best_loss)
            best_loss = torch.where(better, per_image.detach(), best_loss)
            best = torch.where(better[:, None], c.detach(), best)
        opt.step()
        if project is not None:
            with torch.no_grad():
                param.copy_((project(to_coeffs(param)) - fixed) / scale * free + param * (1 - free))
    with torch.no_grad():
        last = to_coeffs(param)
        last_loss = objective(last)
        better = torch.isfinite(last_loss) & (last_loss < best_loss)
        best = torch.where(better[:, None], last, best)
        best_loss = torch.where(better, last_loss, best_loss)
    if keep_best:
        return best, best_loss
    return last.detach(), last_loss.detach()


def _lbfgs(param: Tensor, to_coeffs: Callable[[Tensor], Tensor], objective: Objective, stage: Stage,
           project: Callable[[Tensor], Tensor] | None) -> tuple[Tensor, Tensor]:
    opt = torch.optim.LBFGS([param], lr=1.0, max_iter=stage.iterations, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = objective(to_coeffs(param)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        c = to_coeffs(param)
        if project is not None:
            c = project(c)
        return c.detach(), objective(c).detach()
