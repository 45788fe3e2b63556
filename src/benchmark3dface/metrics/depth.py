"""Depth-map protocol (Richardson et al. 2017, FRGC v2): absolute depth error in millimetres.

Per sample: |pred - gt| over the valid pixels; the sample's mean and 90th percentile.
"Valid" = finite GT, finite prediction and, when several methods are compared, valid for
*every* compared method (Richardson: "pixels which were denoted as valid by all the
methods"). Dataset: the mean over samples of the per-sample mean and of the per-sample 90th
percentile. Depth maps are ``(H, W)`` float millimetres in the input image frame, NaN where
there is no surface (``FaceReconstruction.depth``, ``Sample.depth``).

``align="median"`` first shifts each prediction by the median of (gt - pred) over the valid
pixels (for methods whose depth has an unknown offset, e.g. weak perspective); the default
"none" compares absolute depths as given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..data.sample import Sample
from ..methods.reconstruction import Reconstruction
from .base import ProtocolMetric, ced_curve, pair_up
from .result import MetricValue


def valid_depth(depth: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pixels with a finite, positive depth (and inside ``mask`` when given)."""
    ok = torch.isfinite(depth) & (depth > 0)
    return ok if mask is None else ok & mask.to(torch.bool)


def common_valid_mask(gt: Tensor, preds: Mapping[str, Tensor] | Sequence[Tensor],
                      masks: Mapping[str, Tensor] | Sequence[Tensor | None] | None = None) -> Tensor:
    """(H, W) pixels valid in the GT and in every prediction (and every optional mask)."""
    items = list(preds.items()) if isinstance(preds, Mapping) else list(enumerate(preds))
    ok = valid_depth(gt)
    for key, p in items:
        if p.shape != gt.shape:
            raise ValueError(f"depth map of {key!r} has shape {tuple(p.shape)}, GT has {tuple(gt.shape)}")
        m = None
        if masks is not None:
            m = masks.get(key) if isinstance(masks, Mapping) else masks[key]  # type: ignore[index]
        ok = ok & valid_depth(p, m)
    return ok


def depth_errors(pred: Tensor, gt: Tensor, mask: Tensor, align: str = "none") -> Tensor:
    """Absolute errors (mm) on ``mask`` (1-D tensor)."""
    p = pred[mask].to(torch.float64)
    g = gt[mask].to(torch.float64)
    if align == "median" and len(p):
        p = p + torch.median(g - p)
    elif align != "none":
        raise ValueError(f"align must be 'none' or 'median', got {align!r}")
    return (p - g).abs()


def depth_stats(err: Tensor, q: float = 0.9) -> tuple[float, float]:
    """(mean, q-quantile) of absolute errors; NaN when empty."""
    if len(err) == 0:
        return math.nan, math.nan
    return float(err.mean()), float(torch.quantile(err, q))


def compare_depth(gt: Tensor, preds: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None,
                  align: str = "none") -> dict[str, tuple[float, float]]:
    """Several methods' depth maps for one sample: ``{method: (mean, p90)}`` in mm, all on the
    pixels valid for every method."""
    common = common_valid_mask(gt, preds, masks)
    return {k: depth_stats(depth_errors(p, gt, common, align)) for k, p in preds.items()}


class DepthError(ProtocolMetric):
    """Mean and 90th-percentile absolute depth error (mm). Usable alone (valid = GT and this
    method valid) or in a comparison: pass ``common_masks`` (e.g. from ``common_valid_mask``
    over all compared methods) to ``update``."""

    name: ClassVar[str] = "depth"
    value_names: ClassVar[tuple[str, ...]] = ("mean", "p90", "n_pixels")
    units: ClassVar[dict[str, str]] = {"mean": "mm", "p90": "mm", "n_pixels": ""}

    def __init__(self, align: str = "none", quantile: float = 0.9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if align not in ("none", "median"):
            raise ValueError(f"align must be 'none' or 'median', got {align!r}")
        self.align = align
        self.quantile = float(quantile)

    def config(self) -> dict[str, Any]:
        return {"align": self.align, "quantile": self.quantile}

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction, batch: Sample | Sequence[Sample],
               common_masks: Sequence[Tensor | None] | None = None) -> None:
        ids, vals, reasons = [], [], []
        for k, (rec, sample) in enumerate(pair_up(reconstructions, batch)):
            sid = sample.sample_id or (rec.sample_id if rec else f"#{k}")
            face = rec.face if rec is not None else None
            why, v = None, [math.nan, math.nan, 0]
            gt = sample.depth
            if face is None:
                why = "no reconstruction"
            elif face.failure:
                why = face.failure
            elif face.depth is None:
                why = "no predicted depth map"
            elif gt is None:
                why = "no GT depth (Sample.depth)"
            elif face.depth.shape != gt.shape:
                why = f"depth shape {tuple(face.depth.shape)} != GT {tuple(gt.shape)}"
            else:
                mask = valid_depth(gt) & valid_depth(face.depth.to(gt.device))
                if common_masks is not None and common_masks[k] is not None:
                    mask = mask & common_masks[k].to(mask.device, torch.bool)
                err = depth_errors(face.depth.to(gt.device), gt, mask, self.align)
                if len(err) == 0:
                    why = "no valid pixel"
                else:
                    m, p = depth_stats(err, self.quantile)
                    v = [m, p, len(err)]
            ids.append(sid)
            vals.append(v)
            reasons.append(why or "")
        self.record(ids, vals, reasons)

    def summarise(self, ids, values, reasons, keep):
        ok = np.array([not r for r in reasons], dtype=bool)
        nf = int((~ok).sum())
        mean, p90 = values[ok, 0], values[ok, 1]
        metrics = {"mean": MetricValue(float(mean.mean()) if len(mean) else math.nan,
                                       float(mean.std()) if len(mean) else math.nan, len(mean), nf, "mm"),
                   "p90": MetricValue(float(p90.mean()) if len(p90) else math.nan,
                                      float(p90.std()) if len(p90) else math.nan, len(p90), nf, "mm")}
        return metrics, {"mean_ced": ced_curve(mean, nf, 10.0, x_label="mean depth error (mm)")}
