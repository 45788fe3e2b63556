"""The fitting objective: Deng'19's hybrid loss (without the perceptual term), per image.

Every term is one of the shared loss functions of ``benchmark3dface.losses``, lifted to one
value per image with ``torch.func.vmap`` so that a batch of images is a batch of *independent*
problems: the objective that is minimised is the sum of the per-image objectives, hence each
image's gradient depends on that image only.

Terms (keys of the weight dict):

- ``photo``: robust L2,1 photometric loss (colour units), weight = coverage x skin attention;
- ``landmark``: weighted squared 2D landmark distance, weight 20 on the nose (28-30) and the
  inner mouth (60-67) (px^2 in 224-px units: offsets x 224 / S, so the weights mean the same at
  any image size S); with only 5 points the weights are those of Deng's 5-point groups
  (nose tip 20, eyes and mouth corners 1);
- ``reg``: ``w_id |alpha|^2 + w_exp |beta|^2 + w_tex |delta|^2`` (``reg_weights``);
- ``tex_flat``: albedo variance over the model's skin vertices;
- ``gamma``: variance of the SH coefficients across colour channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark3dface.facemodel import FaceGeometry, MorphableModel, lm68_to_lm5
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.geometry.rotation import euler_to_matrix, rotate
from benchmark3dface.losses import (
    coefficient_regularization,
    gamma_loss,
    landmark_loss,
    landmark_weights,
    photometric_loss,
    texture_flatness_loss,
)
from benchmark3dface.render import render_passes

TERMS = ("photo", "landmark", "reg", "tex_flat", "gamma")
#: Deng'19 official-code weights (photo 1.92, landmark 1.6e-3, reg 3e-4, tex_flat 5, gamma 10).
DEFAULT_WEIGHTS: dict[str, float] = {"photo": 1.92, "landmark": 1.6e-3, "reg": 3e-4, "tex_flat": 5.0,
                                     "gamma": 10.0}
#: Coefficient regulariser group weights (Deng's code: texture 1.7e-2).
DEFAULT_REG_WEIGHTS: dict[str, float] = {"id": 1.0, "exp": 0.8, "tex": 1.7e-2}
#: Landmark offsets are measured in pixels of a 224-px image.
LANDMARK_UNIT_SIZE = 224


def resolve_weights(overrides: Mapping[str, float] | None, defaults: Mapping[str, float],
                    what: str) -> dict[str, float]:
    """``defaults`` updated with ``overrides``; an unknown key is a ``ValueError``."""
    out = dict(defaults)
    for k, v in (overrides or {}).items():
        if k not in defaults:
            raise ValueError(f"unknown {what} {k!r}; known: {sorted(defaults)}")
        out[k] = float(v)
    return out


def five_point_weights(weights68: Tensor) -> Tensor:
    """(68,) landmark weights -> (5,) weights of Deng's 5 points (mean over each group)."""
    return lm68_to_lm5(weights68[:, None])[:, 0]


@dataclass
class LandmarkTarget:
    """2D landmarks to fit.

    points: (B, K, 2) pixels of the input image (K = 68 or 5); weights: (B, K) per-point weights
    (landmark weights x visibility); size: the input image size S (pixels).
    """

    points: Tensor
    weights: Tensor
    size: int

    @property
    def five(self) -> bool:
        return self.points.shape[1] == 5


def landmark_target(lm68: Tensor | None, lm68_visible: Tensor | None, lm5: Tensor | None, size: int,
                    high_weight: float = 20.0) -> LandmarkTarget | None:
    """The landmark target of a batch: 68 points when given (hidden ones weighted 0), else the
    5 alignment points, else None."""
    if lm68 is not None:
        w = landmark_weights(68, high_weight, dtype=lm68.dtype, device=lm68.device).expand(lm68.shape[0], 68)
        if lm68_visible is not None:
            w = w * lm68_visible.to(lm68.dtype)
        return LandmarkTarget(lm68, w, size)
    if lm5 is not None:
        w68 = landmark_weights(68, high_weight, dtype=lm5.dtype, device=lm5.device)
        return LandmarkTarget(lm5, five_point_weights(w68).expand(lm5.shape[0], 5), size)
    return None


def model_landmarks(pred68: Tensor, target: LandmarkTarget) -> Tensor:
    """(B, 68, 2) model landmarks -> the target's point set ((B, 5, 2) for 5 points)."""
    return lm68_to_lm5(pred68) if target.five else pred68


class LandmarkDecoder:
    """Projects only the 68 landmark vertices of a model (cheap: no full-mesh decode).

    Same result as ``model.decode(coeffs, camera).landmarks2d``.
    """

    def __init__(self, model: MorphableModel) -> None:
        idx = model.landmarks68
        self.layout = model.layout
        self.mean = model.mean_shape[idx]  # (68, 3)
        # (K_id + K_exp, 68 * 3): one matrix product per call
        self.basis = torch.cat([model.id_basis[:, idx], model.exp_basis[:, idx]]).flatten(1)

    def __call__(self, coeffs: Tensor, camera: PerspectiveCamera) -> Tensor:
        p = self.layout.split(coeffs)
        shape = torch.cat([p["id"], p["exp"]], -1) @ self.basis
        v = self.mean + shape.view(-1, 68, 3)
        world = rotate(v, euler_to_matrix(p["angles"]), p["trans"])
        return camera.project(world)[..., :2]


def landmark_term(pred68: Tensor, target: LandmarkTarget) -> Tensor:
    """(B,) Deng's landmark loss per image, px^2 in 224-px units (``losses.landmark_loss``)."""
    k = LANDMARK_UNIT_SIZE / target.size
    pred = model_landmarks(pred68, target) * k
    tgt = target.points.to(pred) * k
    return torch.func.vmap(lambda p, t, w: landmark_loss(p[None], t[None], w[None]))(pred, tgt, target.weights.to(pred))


def coefficient_prior(coeffs: Tensor, model: MorphableModel, reg_weights: Mapping[str, float]) -> Tensor:
    """(B,) Deng's coefficient regulariser per image (``losses.coefficient_regularization``)."""
    p = model.layout.split(coeffs)

    def reg(i: Tensor, e: Tensor, t: Tensor) -> Tensor:
        return coefficient_regularization(i[None], e[None], t[None], reg_weights["id"], reg_weights["exp"],
                                          reg_weights["tex"])

    return torch.func.vmap(reg)(p["id"], p["exp"], p["tex"])


def appearance_priors(coeffs: Tensor, model: MorphableModel, albedo: Tensor | None = None) -> dict[str, Tensor]:
    """Per-image ``tex_flat`` (albedo variance over the skin vertices) and ``gamma`` (SH colour
    variance) terms, each (B,); absent when the model has no albedo basis / no 27 SH values.
    ``albedo``: the decoded (B, N, 3) albedo when already at hand."""
    p = model.layout.split(coeffs)
    out = {}
    if model.layout.tex > 0:
        skin = model.skin
        alb = model.albedo(p["tex"]) if albedo is None else albedo
        out["tex_flat"] = torch.func.vmap(lambda a: texture_flatness_loss(a[None], skin))(alb)
    if model.layout.sh == 27:
        out["gamma"] = torch.func.vmap(lambda g: gamma_loss(g[None]))(p["sh"])
    return out


def photometric_terms(coeffs: Tensor, model: MorphableModel, image: Tensor, attention: Tensor
                      ) -> tuple[Tensor, FaceGeometry, Tensor]:
    """Render the faces at the image's size and compare.

    Args:
        coeffs: (B, layout.size).
        image: (B, 3, S, S) in [0, 1]; attention: (B, S, S) skin attention in [0, 1].
    Returns:
        per-image photometric loss (B,) (colour units), the decoded geometry (its
        ``landmarks2d`` in pixels of this size), the rendered images (B, 3, S, S).
    """
    size = image.shape[-1]
    geo = model.decode(coeffs, PerspectiveCamera.deng(size))
    out = render_passes(geo.projected, model.triangles, size, ("rgb", "mask"), vertex_colors=geo.colors,
                        cull_backfaces=True)
    weight = out["mask"][:, 0] * attention
    photo = photometric_loss(out["rgb"], image, weight, reduction="none")
    return photo, geo, out["rgb"]


def total(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Per-image weighted sum (B,) of the terms that have a non-zero weight."""
    acc = None
    for name, value in terms.items():
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        acc = w * value if acc is None else acc + w * value
    if acc is None:
        raise ValueError(f"no active loss term among {sorted(terms)} with weights {dict(weights)}")
    return acc
