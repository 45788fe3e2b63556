"""Skin probability and Deng's skin attention, from a colour model that needs no download.

Colour space: YCbCr of ITU-R BT.601 "studio swing" on 8-bit values (what MATLAB's
``rgb2ycbcr`` computes; Y in [16, 235], Cb/Cr in [16, 240])::

    Cb = 128 + (-37.797 R - 74.203 G + 112.000 B) / 255
    Cr = 128 + (112.000 R - 93.786 G - 18.214 B) / 255      (R, G, B in 0..255)

Model: one Gaussian in (Cb, Cr). The "skin likelihood" of a pixel is the unnormalised
Gaussian ``p = exp(-d² / 2)`` with ``d`` the Mahalanobis distance, so ``p = 1`` at the mean
colour and ``p = 0.5`` at ``d = 1.18``. Default constants (:data:`DEFAULT_SKIN_MODEL`) are the
widely used single-Gaussian CbCr skin model, mean (117.4316, 148.5599) and covariance
[[97.0946, 24.4700], [24.4700, 141.9966]] (common in public face-detection course material,
e.g. MATLAB skin segmentation examples; a general skin prior, biased to the lighting of its
training photos). :func:`fit_skin_model` adapts it to one face: a robust (trimmed) estimate of
mean and covariance from the pixels of the face's central region (cheeks and nose, from the 5
landmarks), falling back to the prior when the region is not skin-coloured at all. The
adaptive model handles skin tones and lighting the prior does not cover. Deng's attention is
``A = 1 if p > 0.5 else p`` (:func:`skin_attention`).

Parse-mask path (preferred when the FaceMesh weights are cached): :func:`skin_mask` with
``source="auto"`` (the default) and 5 points runs FaceMesh on the face
(:mod:`benchmark3dface.facenets.parse`), fits the colour model to the pixels the parse labels
skin or nose (a larger and cleaner sample than the central box), and returns the colour
attention *inside* those pixels and 0 elsewhere (:func:`skin_mask_from_parse`): eyes, brows,
lips, mouth, hair and background get no weight, occluders over the skin (glasses, a fringe, a
hand) keep the colour model's low weight. Like the synthetic data, where ``skin_mask`` is the
parse's skin + nose. Without those weights (or when FaceMesh finds no face) the colour model
above is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_CB = (-37.797, -74.203, 112.0)
_CR = (112.0, -93.786, -18.214)


@dataclass(frozen=True)
class SkinColourModel:
    """Gaussian skin-colour model in (Cb, Cr), 8-bit BT.601 studio-swing units."""

    mean: tuple[float, float]
    cov: tuple[tuple[float, float], tuple[float, float]]


DEFAULT_SKIN_MODEL = SkinColourModel((117.4316, 148.5599), ((97.0946, 24.4700), (24.4700, 141.9966)))


def rgb_to_cbcr(image: Tensor) -> Tensor:
    """``(..., 3, H, W)`` RGB in [0, 1] -> ``(..., H, W, 2)`` (Cb, Cr), 8-bit BT.601 studio
    swing (MATLAB ``rgb2ycbcr``)."""
    m = torch.tensor([_CB, _CR], dtype=image.dtype, device=image.device)  # per 0..1 input: x255/255
    cbcr = torch.einsum("kc,...chw->...hwk", m, image)
    return cbcr + 128.0


def skin_probability(image: Tensor, model: SkinColourModel = DEFAULT_SKIN_MODEL) -> Tensor:
    """Skin likelihood ``exp(-d²/2)`` in [0, 1] per pixel. ``(..., 3, H, W)`` -> ``(..., H, W)``."""
    x = rgb_to_cbcr(image.float()) - torch.tensor(model.mean, device=image.device)
    inv = torch.linalg.inv(torch.tensor(model.cov, dtype=torch.float64)).float().to(image.device)
    d2 = torch.einsum("...i,ij,...j->...", x, inv, x)
    return torch.exp(-0.5 * d2)


def skin_attention(prob: Tensor) -> Tensor:
    """Deng's skin attention: ``A = 1`` where ``prob > 0.5``, else ``prob``."""
    return torch.where(prob > 0.5, torch.ones_like(prob), prob)


def face_region_from_lm5(lm5: Tensor, height: int, width: int) -> Tensor:
    """Boolean ``(H, W)`` mask of the central face (cheeks and nose): the box between the eye
    line (+ 0.15 eye distance) and the mouth line, widened by 0.2 eye distance on each side of
    the eyes. Pixels (continuous convention): a pixel is in when its centre is."""
    lm5 = lm5.float()
    d = float((lm5[1] - lm5[0]).norm())
    x0 = float(torch.min(lm5[[0, 3], 0])) - 0.2 * d
    x1 = float(torch.max(lm5[[1, 4], 0])) + 0.2 * d
    y0 = float(lm5[:2, 1].mean()) + 0.15 * d
    y1 = float(lm5[3:, 1].mean())
    u = torch.arange(width, dtype=torch.float32) + 0.5
    v = torch.arange(height, dtype=torch.float32) + 0.5
    return ((v[:, None] >= y0) & (v[:, None] <= y1)) & ((u[None] >= x0) & (u[None] <= x1))


def _mahalanobis2(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    d = x - mean
    return torch.einsum("...i,ij,...j->...", d, torch.linalg.inv(cov), d)


#: chi-square(2) 95 % quantile, and the variance shrink of a 2D normal truncated there
#: (P(chi2_4 < q) / P(chi2_2 < q)), used to undo the trimming bias.
_CHI2_2_95 = 5.991
_TRIM_VAR_RATIO = 0.8008 / 0.95


def fit_skin_model(image: Tensor, region: Tensor, prior: SkinColourModel = DEFAULT_SKIN_MODEL,
                   min_pixels: int = 50, floor: float = 4.0, iterations: int = 3,
                   max_prior_distance: float = 4.0, coverage: float = 0.9) -> SkinColourModel:
    """Adapt the Gaussian to one face's skin.

    Robust fit on the (Cb, Cr) values of ``region`` (the face's central area, where skin is the
    majority): start from the median and the MAD, then ``iterations`` times keep the pixels
    within the 95 % ellipse (chi-square, 2 dof) and re-estimate mean and covariance (corrected
    for the trimming), so nostrils, beard, glasses or hair in the region do not pull the model.
    ``floor`` (CbCr units²) is added to the covariance diagonal. Since ``p = exp(-d²/2)`` is
    the chi-square(2) tail probability, ``p > 0.5`` would hold for only half of the face's own
    skin pixels; the fitted covariance is therefore widened by
    ``-2 ln(1 - coverage) / (2 ln 2)`` (3.32 for ``coverage = 0.9``) so that a fraction
    ``coverage`` of them get ``p > 0.5``, i.e. full weight in Deng's attention. The prior is returned
    unchanged when fewer than ``min_pixels`` pixels are available or when the fitted mean lies
    more than ``max_prior_distance`` (Mahalanobis, under the prior) from the prior mean, i.e.
    the region is not skin-coloured at all (occluder, mask, strong colour cast).

    Args:
        image: ``(3, H, W)`` RGB in [0, 1].
        region: ``(H, W)`` bool.
    """
    x = rgb_to_cbcr(image.float())[region].double()  # (M, 2)
    if x.shape[0] < min_pixels:
        return prior
    mean = x.median(0).values
    mad = (x - mean).abs().median(0).values * 1.4826
    eye = torch.eye(2, dtype=torch.float64)
    cov = torch.diag(mad ** 2) + floor * eye
    for _ in range(iterations):
        keep = _mahalanobis2(x, mean, cov) < _CHI2_2_95
        if int(keep.sum()) < min_pixels:
            break
        mean = x[keep].mean(0)
        cov = torch.cov(x[keep].T) / _TRIM_VAR_RATIO + floor * eye
    prior_mean = torch.tensor(prior.mean, dtype=torch.float64)
    prior_cov = torch.tensor(prior.cov, dtype=torch.float64)
    if float(_mahalanobis2(mean, prior_mean, prior_cov)) > max_prior_distance ** 2:
        return prior
    cov = cov * (-2.0 * math.log(1.0 - coverage) / (2.0 * math.log(2.0)))
    return SkinColourModel((float(mean[0]), float(mean[1])),
                           ((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))))


#: parse labels counted as skin for the attention (docs/conventions.md: 1 skin, 6 nose)
PARSE_SKIN_LABELS = (1, 6)
SKIN_SOURCES = ("auto", "parse", "colour")


def skin_mask_from_parse(image: Tensor, parse: Tensor, adaptive: bool = True,
                         prior: SkinColourModel = DEFAULT_SKIN_MODEL) -> Tensor:
    """Deng's skin attention ``(H, W)`` gated by a parse mask: the colour attention (model fitted
    to the parse's skin + nose pixels when ``adaptive``) on those pixels, 0 elsewhere.

    Args:
        image: ``(3, H, W)`` RGB in [0, 1].
        parse: ``(H, W)`` integer labels (docs/conventions.md).
    """
    region = torch.zeros(parse.shape, dtype=torch.bool, device=parse.device)
    for label in PARSE_SKIN_LABELS:
        region |= parse == label
    region = region.to(image.device)
    model = fit_skin_model(image, region, prior) if adaptive else prior
    return skin_attention(skin_probability(image, model)) * region.to(image.dtype)


def parse_for_skin(image: Tensor, lm5: Tensor) -> Tensor | None:
    """FaceMesh parse labels ``(H, W)`` of the face given by its 5 points in ``image``
    ``(3, H, W)``, or None when the ``facemesh`` weights are not cached or FaceMesh sees no face
    there. The FaceMesh box is :func:`~.pipeline.box_from_lm5` (no detector run)."""
    from ...facenets.landmarks import available

    if not available("facemesh"):
        return None
    from .pipeline import box_from_lm5

    parser = _face_parser()
    labels, ok = parser(image.detach().float().cpu()[None], box_from_lm5(lm5.detach().float().cpu())[None])
    return labels[0] if bool(ok[0]) else None


_PARSER: list = []


def _face_parser():
    """One CPU FaceParser per process (the networks load once)."""
    if not _PARSER:
        from ...facenets.parse import FaceParser

        _PARSER.append(FaceParser("cpu"))
    return _PARSER[0]


def skin_mask(image: Tensor, lm5: Tensor | None = None, adaptive: bool = True,
              prior: SkinColourModel = DEFAULT_SKIN_MODEL, parse: Tensor | None = None,
              source: str = "auto") -> Tensor:
    """Deng's skin attention map ``(H, W)`` in [0, 1] for one face image ``(3, H, W)``.

    ``source``: ``"auto"`` uses ``parse`` when given, else the FaceMesh parse of the face when
    ``lm5`` is given, ``adaptive`` is on and the ``facemesh`` weights are cached
    (:func:`skin_mask_from_parse`), else the colour model; ``"parse"`` requires a parse
    (given, or from FaceMesh: ``ValueError`` when none is available); ``"colour"`` is the colour
    model only. Colour model: with ``lm5`` and ``adaptive=True`` it is fitted to the face first
    (:func:`fit_skin_model`), otherwise the prior is used."""
    if source not in SKIN_SOURCES:
        raise ValueError(f"skin_mask: source must be one of {SKIN_SOURCES}, got {source!r}")
    if source != "colour":
        if parse is None and lm5 is not None and (adaptive or source == "parse"):
            parse = parse_for_skin(image, lm5)
        if parse is not None:
            return skin_mask_from_parse(image, parse, adaptive, prior)
        if source == "parse":
            raise ValueError("skin_mask: source='parse' but no parse mask is available (give one, or 5 points "
                             "and the FaceMesh weights: b3f weights fetch blazeface facemesh)")
    model = prior
    if adaptive and lm5 is not None:
        region = face_region_from_lm5(lm5, image.shape[-2], image.shape[-1])
        model = fit_skin_model(image, region, prior)
    return skin_attention(skin_probability(image, model))
