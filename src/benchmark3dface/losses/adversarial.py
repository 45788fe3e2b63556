"""WGAN-div adversarial terms (Wu et al., "Wasserstein Divergence for GANs", ECCV 2018), used
by Gao et al. (Eq. 11) with a GCN critic on shapes.

Sign convention (the common one, and Gao's ``L_adv = -D(s_hat)``): the critic D scores *real*
samples high.  The critic minimises ``E[D(fake)] - E[D(real)] + k E_{x~P_u}[||grad D(x)||^p]``,
the generator minimises ``-E[D(fake)]``.  Defaults ``k = 2, p = 6`` are Wu et al.'s.

``P_u`` (where the gradient norm is penalised): Wu et al. leave it free and, in their
experiments and reference implementation, penalise the gradient at the real and the fake
samples (``sampling="real_fake"``: ``k/2 (E_r[||grad||^p] + E_g[||grad||^p])``, i.e. ``P_u`` the
equal mixture of ``P_r`` and ``P_g``); Gao et al.'s text describes uniform samples on lines
between real and fake points (``sampling="interpolate"``, as in WGAN-GP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

Critic = Callable[[Tensor], Tensor]

#: Wu et al. 2018 defaults.
WGAN_DIV_K = 2.0
WGAN_DIV_P = 6.0


def _grad_norm_pow(critic: Critic, x: Tensor, p: float) -> Tensor:
    """``||grad_x D(x)||_2^p`` per sample ``(B,)``, differentiable w.r.t. the critic's
    parameters (double backprop).  ``x`` is detached from its producer."""
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    sq = (g.flatten(1) ** 2).sum(1)
    return sq ** (p / 2)  # no sqrt: smooth at 0 for p >= 2


def wgan_div_gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, k: float = WGAN_DIV_K,
                              p: float = WGAN_DIV_P,
                              sampling: Literal["real_fake", "interpolate"] = "real_fake",
                              generator: torch.Generator | None = None) -> Tensor:
    """WGAN-div gradient term ``k E_{x~P_u}[||grad_x D(x)||^p]``.

    Args:
        critic: maps ``(B, ...)`` samples to ``(B,)`` or ``(B, 1)`` scores.
        real, fake: ``(B, ...)`` samples (detached here; the penalty trains the critic only).
        sampling: ``"real_fake"`` (Wu et al.'s experiments: mean of the real and the fake
            expectations) or ``"interpolate"`` (Gao et al.: ``x = e real + (1-e) fake``,
            ``e ~ U(0, 1)`` per sample; needs equal batch shapes).
        generator: RNG for the interpolation weights.
    Returns:
        Scalar ((score units / sample units)^p times k).
    """
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} samples differ in shape")
    if sampling == "real_fake":
        return k * 0.5 * (_grad_norm_pow(critic, real, p).mean() + _grad_norm_pow(critic, fake, p).mean())
    if sampling == "interpolate":
        if real.shape != fake.shape:
            raise ValueError("interpolate sampling needs real and fake batches of the same shape")
        e = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator,
                       dtype=real.dtype, device=real.device)
        x = e * real.detach() + (1 - e) * fake.detach()
        return k * _grad_norm_pow(critic, x, p).mean()
    raise ValueError(f"sampling must be 'real_fake' or 'interpolate', got {sampling!r}")


def wgan_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Wasserstein critic term ``E[D(fake)] - E[D(real)]`` (minimised by the critic)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """Generator (encoder-decoder) adversarial loss ``-E[D(fake)]`` (Gao's ``L_adv``)."""
    return -fake_scores.mean()


class CriticLoss(NamedTuple):
    total: Tensor
    wasserstein: Tensor
    penalty: Tensor


def wgan_div_critic_loss(critic: Critic, real: Tensor, fake: Tensor, k: float = WGAN_DIV_K,
                         p: float = WGAN_DIV_P,
                         sampling: Literal["real_fake", "interpolate"] = "real_fake",
                         generator: torch.Generator | None = None) -> CriticLoss:
    """Full WGAN-div critic objective: ``wgan_critic_loss + wgan_div_gradient_penalty``.

    ``fake`` is detached (a critic step must not update the generator).  Returns
    ``CriticLoss(total, wasserstein, penalty)``.
    """
    w = wgan_critic_loss(critic(real.detach()), critic(fake.detach()))
    gp = wgan_div_gradient_penalty(critic, real, fake, k, p, sampling, generator)
    return CriticLoss(w + gp, w, gp)
