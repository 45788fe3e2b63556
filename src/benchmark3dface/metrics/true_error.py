"""True error (synthetic data only): per-vertex distance to the GT mesh in known
correspondence, after a similarity (Umeyama) alignment of the prediction onto the GT.

Requires the prediction to share the GT's topology (same vertex count and order), as a
method decoding the same morphable model does. GT: ``Sample.vertices`` (mm, model frame).
Per scored unit: mean and RMS of the per-vertex Euclidean distances (mm), over all vertices or
the ``vertex_ids`` subset. ``with_scale=False``: rigid alignment.

Units (``metrics.matching.iter_scored_faces``): a single image is one unit; a set / multi-view
sample with per-view GT meshes ``(V, N, 3)`` is scored per view (``"<id>#v<k>"`` against
``Reconstruction.per_view[k]``, else the aggregated face), one with a single GT mesh
``(N, 3)`` (e.g. the identity GT of a set) as a whole with the aggregated face; a multi-face
image per GT face (``"<id>#<k>"``, faces matched by centre or box, ``match_rule``), a GT face
without a match failing "face not detected". Predicted faces matched to no GT face are
counted in the ``false_positives`` metric (present when multi-face images were seen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..data.sample import Sample
from ..contracts import Reconstruction
from .base import ProtocolMetric, face_failure, pair_up
from .geometry import apply_similarity, similarity_from_landmarks
from .matching import FalsePositiveCounter, MatchRule, iter_scored_faces
from .result import MetricValue


def aligned_vertex_errors(pred: Tensor, gt: Tensor, with_scale: bool = True) -> Tensor:
    """(..., N, 3) predictions and GT in correspondence (mm) -> (..., N) per-vertex distances
    (mm, float64) after the least-squares similarity (rigid when ``with_scale=False``)
    pred -> gt, one per leading index. The one true-error alignment: methods (e.g. Deng's
    validation error) call it too."""
    if pred.shape != gt.shape or pred.ndim < 2 or pred.shape[-1] != 3:
        raise ValueError(f"true error: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be (..., N, 3)")
    lead, n = pred.shape[:-2], pred.shape[-2]
    p = pred.to(torch.float64).reshape(-1, n, 3)
    g = gt.to(torch.float64).reshape(-1, n, 3)
    s, r, t = similarity_from_landmarks(p, g, with_scale)
    return (apply_similarity(p, s, r, t) - g).norm(dim=-1).reshape(*lead, n)


class TrueError(FalsePositiveCounter, ProtocolMetric):
    """Mean / RMS per-vertex error (mm) after similarity alignment (see module docstring)."""

    name: ClassVar[str] = "true_error"
    value_names: ClassVar[tuple[str, ...]] = ("mean", "rmse")
    units: ClassVar[dict[str, str]] = {"mean": "mm", "rmse": "mm", "false_positives": ""}
    sample_metrics: ClassVar[dict[str, str | None]] = {"false_positives": None}

    def __init__(self, with_scale: bool = True, vertex_ids: Tensor | Sequence[int] | None = None,
                 match_rule: str = "center", match_radius: float = 0.5, min_iou: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.with_scale = with_scale
        self.vertex_ids = None if vertex_ids is None else torch.as_tensor(vertex_ids, dtype=torch.long)
        self.rule = MatchRule(match_rule, match_radius, min_iou)
        self._add_fp_states()

    def config(self) -> dict[str, Any]:
        return {"with_scale": self.with_scale,
                "vertices": "all" if self.vertex_ids is None else len(self.vertex_ids),
                "units": "per view (sets, multi-view with per-view GT), per matched face (multi-face)",
                "match": self.rule.describe()}

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction,
               batch: Sample | Sequence[Sample]) -> None:
        ok_ids, preds, gts = [], [], []
        for k, (rec, sample) in enumerate(pair_up(reconstructions, batch)):
            sid = sample.sample_id or (rec.sample_id if rec else f"#{k}")
            views = isinstance(sample.vertices, Tensor) and sample.vertices.ndim == 3
            units = iter_scored_faces(rec, sample, views=views, rule=self.rule, sample_id=sid)
            if sample.kind == "multiface":
                self.record_false_positives(sid, len(units.false_positives))
            for uid, face, view in units:
                why = units.missing.get(uid) if face is None else face_failure(face)
                gt = view.vertices
                if why is None and gt is None:
                    why = "no GT mesh (Sample.vertices)"
                if why is None:
                    assert face is not None and face.vertices is not None and gt is not None
                    gt = gt.reshape(-1, 3)
                    if face.vertices.shape != gt.shape:
                        why = (f"topology mismatch: {tuple(face.vertices.shape)} predicted vs "
                               f"{tuple(gt.shape)} GT vertices")
                    elif not torch.isfinite(gt).all():
                        why = "non-finite GT vertices"
                if why is not None:
                    self.record([uid], [[math.nan, math.nan]], [why])
                    continue
                v, g = face.vertices, gt
                if self.vertex_ids is not None:
                    v, g = v[self.vertex_ids], g[self.vertex_ids]
                ok_ids.append(uid)
                preds.append(v.to(self.device, torch.float64))
                gts.append(g.to(self.device, torch.float64))
        # equal sizes batch together
        by_n: dict[int, list[int]] = {}
        for i, p in enumerate(preds):
            by_n.setdefault(len(p), []).append(i)
        for idx in by_n.values():
            err = aligned_vertex_errors(torch.stack([preds[i] for i in idx]), torch.stack([gts[i] for i in idx]),
                                        self.with_scale)
            vals = torch.stack([err.mean(1), err.pow(2).mean(1).sqrt()], 1)
            self.record([ok_ids[i] for i in idx], vals, [""] * len(idx))

    def summarise(self, ids, values, reasons, keep):
        metrics, curves = super().summarise(ids, values, reasons, keep)
        fp, images = self.false_positive_total()
        if images:
            metrics["false_positives"] = MetricValue(fp, None, images, 0, "")
        return metrics, curves


__all__ = ["TrueError", "aligned_vertex_errors"]
