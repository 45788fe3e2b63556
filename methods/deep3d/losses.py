"""Deng'19's hybrid-level loss (Sec. 4), on the project's renderer and shared loss terms.

Terms (names are the keys of the weight dicts and of the logged values):

- ``photo``: robust L2,1 photometric loss over the rendered face region with skin attention
  (``losses.photometric_loss`` with weight = coverage mask x attention), colour units;
- ``landmark``: weighted squared 2D distance of the 68 landmarks (weight 20 on the nose 28-30 and
  inner mouth 60-67), px^2 -- measured in 224-px units (pixel offsets x 224/S) so that the
  paper's weight means the same at any input size S;
- ``perceptual``: ``1 - cos`` of identity embeddings of the input and of the rendered face
  composited over the input (both warped with the input's 5 points);
- ``reg``: coefficient regulariser ``w_id |alpha|^2 + w_exp |beta|^2 + w_tex |delta|^2``;
- ``tex_flat``: albedo variance over the model's skin vertices;
- ``gamma``: variance of the SH coefficients across colour channels (official code only).

Presets: ``paper`` (photo 1.9, landmark 1.6e-3, perceptual 0.2, reg 3e-4 with w_tex 1.7e-3,
tex_flat 5, gamma 0) and ``code`` (the official PyTorch code: photo 1.92, w_tex 1.7e-2, gamma 10).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark3dface.facemodel import MorphableModel
from benchmark3dface.geometry.camera import PerspectiveCamera
from benchmark3dface.geometry.rotation import euler_to_matrix, rotate
from benchmark3dface.losses import (LossWeights, WeightedLoss, coefficient_regularization, gamma_loss,
                                    identity_perceptual_loss, landmark_loss, landmark_weights, photometric_loss,
                                    skin_attention, texture_flatness_loss)
from benchmark3dface.render import render_passes

TERMS = ("photo", "landmark", "perceptual", "reg", "tex_flat", "gamma")
LOSS_PRESETS: dict[str, dict[str, float]] = {
    "paper": {"photo": 1.9, "landmark": 1.6e-3, "perceptual": 0.2, "reg": 3e-4, "tex_flat": 5.0, "gamma": 0.0},
    "code": {"photo": 1.92, "landmark": 1.6e-3, "perceptual": 0.2, "reg": 3e-4, "tex_flat": 5.0, "gamma": 10.0},
    # C-Net (Sec. 5.1): landmark 1.6e-3, photo 1.9, id 0.1 (read as the identity-perceptual term);
    # only the identity coefficients change, so the albedo / light terms are constant and off.
    "cnet": {"photo": 1.9, "landmark": 1.6e-3, "perceptual": 0.1, "reg": 3e-4, "tex_flat": 0.0, "gamma": 0.0},
}
REG_PRESETS: dict[str, dict[str, float]] = {
    "paper": {"id": 1.0, "exp": 0.8, "tex": 1.7e-3},
    "code": {"id": 1.0, "exp": 0.8, "tex": 1.7e-2},
    "cnet": {"id": 1.0, "exp": 0.8, "tex": 1.7e-3},
}
#: Table 1 ablations: which image-level terms are on (regularisers stay on in all of them).
ABLATIONS = {
    "per": {"photo": 0.0, "landmark": 0.0},
    "photo_lm": {"perceptual": 0.0},
    "lm_per": {"photo": 0.0},
    "all": {},
}


def resolve_weights(preset: str = "paper", overrides: Mapping[str, float] | None = None,
                    reg_overrides: Mapping[str, float] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(term weights, regulariser group weights) of ``preset`` with per-term overrides."""
    if preset not in LOSS_PRESETS:
        raise ValueError(f"unknown loss preset {preset!r}; choose one of {sorted(LOSS_PRESETS)}")
    w = dict(LOSS_PRESETS[preset])
    for k, v in (overrides or {}).items():
        if k not in TERMS:
            raise ValueError(f"unknown Deng loss term {k!r} in loss_weights; terms are {TERMS}")
        w[k] = float(v)
    r = dict(REG_PRESETS[preset])
    for k, v in (reg_overrides or {}).items():
        if k not in r:
            raise ValueError(f"unknown regulariser group {k!r} in reg_weights; groups are {sorted(r)}")
        r[k] = float(v)
    return w, r


def project_landmarks(facemodel: MorphableModel, coeffs: Tensor, camera: PerspectiveCamera) -> Tensor:
    """(B, C) coefficients -> (B, 68, 2) projected landmarks (pixels), decoding only the 68
    landmark vertices (same values as ``facemodel.decode(coeffs, camera).landmarks2d``)."""
    p = facemodel.layout.split(coeffs)
    lm = facemodel.landmarks68
    verts = (facemodel.mean_shape[lm]
             + torch.einsum("bk,knc->bnc", p["id"], facemodel.id_basis[:, lm])
             + torch.einsum("bk,knc->bnc", p["exp"], facemodel.exp_basis[:, lm]))
    world = rotate(verts, euler_to_matrix(p["angles"]), p["trans"])
    return camera.project(world)[..., :2]


def attention_map(batch_skin: Tensor | None, images: Tensor, lm5: Tensor | None, source: str = "auto") -> Tensor:
    """Deng's skin attention ``A`` (B, H, W): from the sample's skin mask when present
    (``source`` "auto" | "sample"), else from the preprocessing skin-colour model (per image,
    fitted to the face when 5 points are known), else ones (``source="none"`` forces ones)."""
    b, _, h, w = images.shape
    if source == "none":
        return images.new_ones(b, h, w)
    if batch_skin is not None and source in ("auto", "sample"):
        return skin_attention(batch_skin.to(images).reshape(b, h, w))
    if source == "sample":
        raise ValueError("skin_source='sample' but the batch has no skin_mask")
    try:
        from benchmark3dface.data.preprocess.skin import skin_mask
    except ImportError:  # preprocessing not installed: no attention
        return images.new_ones(b, h, w)
    with torch.no_grad():
        maps = [skin_mask(images[i].float(), None if lm5 is None else lm5[i]) for i in range(b)]
    return torch.stack(maps).to(images)


@dataclass
class DengLoss:
    """The hybrid loss of Deng'19 for one face model and camera convention.

    Not an ``nn.Module`` on purpose: the frozen identity encoder it may hold must stay out of
    the method's state dict (checkpoints hold only the trained networks).

    Attributes:
        facemodel: the morphable model (its buffers define the device).
        weights / reg_weights: see :func:`resolve_weights`.
        encoder: identity encoder for ``perceptual`` (None = term off).
        skin_source: ``auto`` | ``sample`` | ``model`` | ``none`` (see :func:`attention_map`).
        landmark_unit_224: measure landmark offsets in 224-px units (see module docstring).
        use_landmark_visibility: drop landmarks the sample marks invisible (default: use all 68,
            Deng fits detected contour points too).
        landmark_high_weight: weight of the nose (28-30) and inner-mouth (60-67) landmarks
            (20 in the paper and code; the other points weigh 1).
        image_terms_subset: evaluate the rendered-image terms (photo, perceptual) and the
            texture flatness on the first ``k`` images of each batch only (None = all, the
            paper). An unbiased subsample that makes a step cheaper (the landmark term, which
            needs no rendering, still sees the whole batch); batches are shuffled.
        composite: composite the rendered face over the input for the perceptual term.
    """

    facemodel: MorphableModel
    weights: dict[str, float]
    reg_weights: dict[str, float]
    encoder: Any = None
    skin_source: str = "auto"
    landmark_unit_224: bool = True
    use_landmark_visibility: bool = False
    composite: bool = True
    landmark_high_weight: float = 20.0
    image_terms_subset: int | None = None

    def __post_init__(self) -> None:
        if self.skin_source not in ("auto", "sample", "model", "none"):
            raise ValueError(f"skin_source must be auto|sample|model|none, got {self.skin_source!r}")
        self._weights = LossWeights(self.weights)
        self.lm_weights = landmark_weights(high_weight=self.landmark_high_weight)

    def active(self, name: str) -> bool:
        if name == "perceptual" and self.encoder is None:
            return False
        return self._weights.active(name)

    def render(self, coeffs: Tensor, size: int) -> tuple[Any, Tensor, Tensor]:
        """Decode and render (B, C) coefficients at ``size`` px: (geometry, rgb (B,3,S,S), mask (B,S,S))."""
        cam = PerspectiveCamera.deng(size)
        geo = self.facemodel.decode(coeffs, cam)
        out = render_passes(geo.projected, self.facemodel.triangles, size, ("rgb", "mask"),
                            vertex_colors=geo.colors, cull_backfaces=True)
        return geo, out["rgb"], out["mask"][:, 0]

    def __call__(self, coeffs: Tensor, images: Tensor, lm68: Tensor | None, lm5: Tensor | None = None,
                 skin: Tensor | None = None, lm68_visible: Tensor | None = None) -> tuple[WeightedLoss, dict[str, Any]]:
        """Loss of (B, C) coefficients against (B, 3, S, S) images in [0, 1].

        Args:
            lm68: (B, 68, 2) pixels (required when the landmark term is on); lm5: (B, 5, 2)
            pixels (perceptual alignment; derived from lm68 when None); skin: (B, S, S) skin mask.
        Returns:
            (WeightedLoss: total + per-term values, extras: geometry, rendered image, mask).
        """
        b, _, h, w = images.shape
        if h != w:
            raise ValueError(f"Deng's loss needs square images, got {h}x{w}")
        fm = self.facemodel
        parts = fm.layout.split(coeffs)
        if lm5 is None and lm68 is not None:
            from benchmark3dface.facemodel import lm68_to_lm5

            lm5 = lm68_to_lm5(lm68)
        k = b if self.image_terms_subset is None else max(1, min(b, int(self.image_terms_subset)))
        need_render = self.active("photo") or self.active("perceptual")
        geo = rgb = mask = None
        if need_render:
            geo, rgb, mask = self.render(coeffs[:k], h)
        terms: dict[str, Tensor] = {}
        if self.active("photo"):
            att = attention_map(None if skin is None else skin[:k], images[:k], None if lm5 is None else lm5[:k],
                                self.skin_source)
            terms["photo"] = photometric_loss(rgb, images[:k], weight=mask * att)
        if self.active("landmark"):
            if lm68 is None:
                raise ValueError("the landmark term needs 68 landmarks in the batch (lm68)")
            unit = 224.0 / h if self.landmark_unit_224 else 1.0
            vis = lm68_visible if self.use_landmark_visibility else None
            pred = geo.landmarks2d if (geo is not None and k == b) else \
                project_landmarks(fm, coeffs, PerspectiveCamera.deng(h))
            terms["landmark"] = landmark_loss(pred * unit, lm68.to(coeffs) * unit,
                                              weights=self.lm_weights.to(coeffs), visible=vis)
        if self.active("perceptual"):
            enc = self.encoder
            if next(enc.parameters()).device != images.device:
                enc.to(images.device)
            m = mask[:, None]
            img_k, lm5_k = images[:k], None if lm5 is None else lm5[:k]
            shown = rgb * m + img_k * (1 - m) if self.composite else rgb
            with torch.no_grad():
                target = enc(img_k, lm5_k)
            terms["perceptual"] = identity_perceptual_loss(enc(shown, lm5_k), target)
        if self.active("reg"):
            r = self.reg_weights
            terms["reg"] = coefficient_regularization(parts["id"], parts["exp"], parts["tex"] if fm.layout.tex else None,
                                                      r["id"], r["exp"], r["tex"])
        if self.active("tex_flat") and fm.layout.tex:
            albedo = geo.albedo if geo is not None else fm.albedo(parts["tex"][:k])
            terms["tex_flat"] = texture_flatness_loss(albedo, fm.skin)
        if self.active("gamma") and fm.layout.sh == 27:
            terms["gamma"] = gamma_loss(parts["sh"])
        return self._weights(terms), {"geometry": geo, "rgb": rgb, "mask": mask}
