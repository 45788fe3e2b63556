"""Face detection protocol for multi-face images (WM3DR's single-shot setting).

GT faces: ``Sample.lm68`` ``(F, 68, 2)`` px (a single-face image: ``(68, 2)``, one face) and,
when present, ``Sample.centers`` ``(F, 2)``. Detections: the faces of the ``Reconstruction``
that carry no ``failure`` (a face with a failure reason is not a detection), ranked by
``FaceReconstruction.score`` (a face without a score counts as score 1).

**Match rule** (``metrics.matching.MatchRule``, stated in the result's config): by default a
detection matches a GT face when its centre lies within 0.5 x the GT face size (``sqrt(w h)``
of the GT 68-landmark box) of the GT centre (``rule="iou"``: the two 68-landmark boxes overlap
with IoU >= 0.5). Per image, detections are matched greedily in descending score order (VOC /
COCO), each taking the closest still-unmatched GT face; a detection matched to no GT face is a
false positive, whether it lies on the background or duplicates a face already taken; a GT
face matched by none is missed. An image without a reconstruction has no detections.

Per image (record ``<sample_id>``): ``recall`` = TP / GT faces, ``precision`` = TP /
detections (NaN without detections), ``true_positives``, ``false_positives``, ``n_gt``.
Dataset (pooled over images): ``average_precision`` = area under the precision-recall curve
of all detections ranked by score, the precision made monotone (all-point interpolation,
VOC 2010+; detections with equal scores enter together, so ties do not depend on order);
``recall`` = sum TP / sum GT; ``precision`` = sum TP / sum detections; ``false_positives``
and ``missed`` (totals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..data.sample import Sample
from ..contracts import Reconstruction
from .base import ProtocolMetric, _cat_state, pair_up
from .matching import MatchRule
from .result import MetricValue


def average_precision(scores: np.ndarray, true_positive: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP: detections ``scores`` (D,) with flags ``true_positive`` (D,)
    against ``n_gt`` GT faces. Equal scores form one threshold. NaN without GT faces, 0 without
    detections."""
    if n_gt <= 0:
        return math.nan
    s = np.asarray(scores, np.float64).reshape(-1)
    tp = np.asarray(true_positive, np.float64).reshape(-1)
    if len(s) == 0:
        return 0.0
    order = np.argsort(-s, kind="stable")
    s, tp = s[order], tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    last = np.r_[s[1:] != s[:-1], True]  # the end of each group of equal scores
    recall = ctp[last] / n_gt
    precision = ctp[last] / (ctp[last] + cfp[last])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * envelope))


class FaceDetection(ProtocolMetric):
    """Recall, precision, AP and false positives of face detection (see module docstring)."""

    name: ClassVar[str] = "detection"
    value_names: ClassVar[tuple[str, ...]] = ("recall", "precision", "true_positives", "false_positives", "n_gt")
    optional_values: ClassVar[tuple[str, ...]] = ("precision",)
    units: ClassVar[dict[str, str]] = {k: "" for k in ("recall", "precision", "true_positives", "false_positives",
                                                        "n_gt", "average_precision", "missed")}
    directions: ClassVar[dict[str, str]] = {"recall": "higher", "precision": "higher", "true_positives": "higher",
                                            "average_precision": "higher"}
    sample_metrics: ClassVar[dict[str, str | None]] = {"average_precision": None, "recall": None, "precision": None,
                                                       "false_positives": None, "missed": None}

    def __init__(self, match_rule: str = "center", match_radius: float = 0.5, min_iou: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = MatchRule(match_rule, match_radius, min_iou)
        # per record: its number of detections; per detection: score and TP flag (cat-reduced,
        # aligned with the records in the same rank order)
        self.add_state("det_count", default=[], dist_reduce_fx="cat")
        self.add_state("det_score", default=[], dist_reduce_fx="cat")
        self.add_state("det_tp", default=[], dist_reduce_fx="cat")

    def config(self) -> dict[str, Any]:
        return {"match": self.rule.describe(), "assignment": "greedy by descending score",
                "average_precision": "all-point interpolation, ties grouped", "missing score": 1.0}

    def _record_image(self, sid: str, values: Sequence[float], reason: str, scores: Tensor, tp: Tensor) -> None:
        self.record([sid], [list(values)], [reason])
        dev = self.device
        self.det_count.append(torch.tensor([float(len(scores))], dtype=torch.float64, device=dev))
        self.det_score.append(scores.to(dev, torch.float64).reshape(-1))
        self.det_tp.append(tp.to(dev, torch.float64).reshape(-1))

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction,
               batch: Sample | Sequence[Sample]) -> None:
        empty = torch.zeros(0, dtype=torch.float64)
        for k, (rec, sample) in enumerate(pair_up(reconstructions, batch)):
            sid = sample.sample_id or (rec.sample_id if rec else f"#{k}")
            gt = sample.lm68
            nan5 = [math.nan] * 5
            if sample.kind in ("set", "multiview"):
                self._record_image(sid, nan5, f"detection scores single or multi-face images, not {sample.kind!r}",
                                   empty, empty)
                continue
            if not isinstance(gt, Tensor) or gt.shape[-2:] != (68, 2):
                self._record_image(sid, nan5, "no GT landmarks (Sample.lm68) to define the GT faces", empty, empty)
                continue
            gt = gt.reshape(-1, 68, 2)
            faces = [] if rec is None else [f for f in rec.faces if not f.failure]
            scores = torch.tensor([1.0 if f.score is None else float(f.score) for f in faces], dtype=torch.float64)
            centers = sample.centers if isinstance(sample.centers, Tensor) and sample.kind == "multiface" else None
            match = self.rule.match(faces, gt, centers, scores=scores.numpy())
            tp = torch.zeros(len(faces), dtype=torch.float64)
            for m in match:
                if m is not None:
                    tp[m] = 1.0
            n_tp, n_det, n_gt = float(tp.sum()), len(faces), len(gt)
            values = [n_tp / n_gt, n_tp / n_det if n_det else math.nan, n_tp, n_det - n_tp, n_gt]
            self._record_image(sid, values, "", scores, tp)

    def summarise(self, ids, values, reasons, keep):
        ok = np.array([not r for r in reasons], dtype=bool)
        nf = int((~ok).sum())
        counts = _cat_state(self.det_count).to(torch.float64).numpy().astype(np.int64)
        score = _cat_state(self.det_score).to(torch.float64).numpy()
        tp = _cat_state(self.det_tp).to(torch.float64).numpy()
        starts = np.r_[0, np.cumsum(counts)[:-1]] if len(counts) else np.zeros(0, np.int64)
        sel = [np.arange(starts[i], starts[i] + counts[i]) for i, r in zip(keep, reasons) if not r]
        sel_idx = np.concatenate(sel) if sel else np.zeros(0, np.int64)
        n_img = int(ok.sum())
        tps, fps, gts = (float(values[ok, j].sum()) for j in (2, 3, 4))
        ap = average_precision(score[sel_idx], tp[sel_idx], int(gts))
        dets = tps + fps
        metrics = {
            "average_precision": MetricValue(ap, None, n_img, nf, ""),
            "recall": MetricValue(tps / gts if gts else math.nan, None, n_img, nf, ""),
            "precision": MetricValue(tps / dets if dets else math.nan, None, n_img, nf, ""),
            "false_positives": MetricValue(fps, None, n_img, nf, ""),
            "missed": MetricValue(gts - tps, None, n_img, nf, ""),
        }
        return metrics, {}
