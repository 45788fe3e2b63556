"""Matching predicted faces to ground-truth faces, and the units every protocol scores.

One matcher for the whole project (``match_faces``, driven by a :class:`MatchRule`): the
per-face protocols (true error, NME, depth ...) and the detection protocol all decide which
predicted face belongs to which GT face the same way.

**Match rule** (``MatchRule``), stated in every result's config:

- ``"center"`` (default): a predicted face may match a GT face when its centre lies within
  ``radius`` (0.5) x the GT face size of the GT centre. Face size = ``sqrt(w h)`` of the
  GT 68-landmark box (the NME normaliser). Centres are compared like with like: a prediction
  with ``FaceReconstruction.center`` against ``Sample.centers`` (WM3DR's centre, the image of
  the face origin), a prediction without one by the centre of its 2D-landmark box against the
  centre of the GT landmark box;
- ``"iou"``: the boxes of the predicted and GT 68 landmarks overlap with IoU >= ``min_iou``
  (0.5).

**Assignment**: one-to-one. Without scores, the Hungarian algorithm (scipy
``linear_sum_assignment``) maximises the number of matched pairs, then minimises the summed
centre distance (or 1 - IoU); with scores (detection, AP), greedy in descending score order,
each prediction taking the closest still-unmatched allowed GT face (VOC / COCO).

**Scored units** (``iter_scored_faces``): a single image is one unit (the sample id); view k of
a set / multi-view sample is ``"<sample_id>#v<k>"`` scored with ``Reconstruction.per_view[k]``
(the aggregated ``faces[0]`` when the method gives no per-view faces); GT face k of a
multi-face image is ``"<sample_id>#<k>"`` scored with its matched predicted face. A GT face
without a match is a failure ("face not detected"); predicted faces matched to no GT face are
the false positives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..data.sample import Sample
from ..contracts import FaceReconstruction, Reconstruction
from .base import _cat_state, decode_strings, encode_strings

MATCH_RULES = ("center", "iou")


def _np(x: Tensor | np.ndarray | float | None) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64)
    return np.asarray(x, np.float64)


def box_iou(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> np.ndarray:
    """IoU of boxes ``(x0, y0, x1, y1)`` px: (G, 4) x (P, 4) -> (G, P); NaN boxes give 0."""
    a, b = _np(a).reshape(-1, 4), _np(b).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def match_faces(pred_centers: Tensor | np.ndarray | None, gt_centers: Tensor | np.ndarray | None,
                max_dist: Tensor | np.ndarray | float | None = None, *,
                pred_boxes: Tensor | np.ndarray | None = None, gt_boxes: Tensor | np.ndarray | None = None,
                min_iou: float | None = None, scores: Tensor | np.ndarray | None = None) -> list[int | None]:
    """One-to-one assignment of predicted faces to GT faces (the project's only face matcher).

    Args:
        pred_centers: (P, 2) predicted face centres (pixels; centre rule); rows with NaN never
            match.
        gt_centers: (G, 2) GT face centres (pixels), or (G, P, 2): the GT centre to compare
            with each prediction (``MatchRule.match`` compares centres like with like).
        max_dist: centre rule: a pair farther apart than this (pixels; scalar or per GT face
            (G,)) never matches.
        pred_boxes / gt_boxes / min_iou: IoU rule (when ``min_iou`` is given): boxes
            ``(x0, y0, x1, y1)`` px, a pair with IoU < ``min_iou`` never matches.
        scores: (P,) prediction confidences: greedy assignment in descending score order
            (stable for ties); None: Hungarian (most pairs, then least total cost).
    Returns:
        For each GT face the index of its predicted face, or None (a missed face).
    """
    if min_iou is not None:
        if pred_boxes is None or gt_boxes is None:
            raise ValueError("the IoU rule needs pred_boxes and gt_boxes")
        iou = box_iou(gt_boxes, pred_boxes)
        allowed = iou >= float(min_iou)
        cost = 1.0 - iou
        g, p = iou.shape
    else:
        if pred_centers is None or gt_centers is None or max_dist is None:
            raise ValueError("the centre rule needs pred_centers, gt_centers and max_dist")
        pc = _np(pred_centers).reshape(-1, 2)
        gc = _np(gt_centers)
        p = len(pc)
        g = gc.shape[0] if gc.ndim == 3 else gc.reshape(-1, 2).shape[0]
        if p == 0 or g == 0:
            return [None] * g
        gc = gc.reshape(g, p, 2) if gc.ndim == 3 else gc.reshape(g, 1, 2)
        cost = np.linalg.norm(gc - pc[None], axis=-1)
        md = np.broadcast_to(_np(max_dist), (g,))
        allowed = np.isfinite(cost) & (cost <= md[:, None])
    out: list[int | None] = [None] * g
    if p == 0 or g == 0:
        return out
    if scores is None:
        big = 1e12
        rows, cols = linear_sum_assignment(np.where(allowed, np.nan_to_num(cost, nan=big), big))
        for r, c in zip(rows, cols):
            if allowed[r, c]:
                out[r] = int(c)
        return out
    order = np.argsort(-_np(scores).reshape(-1), kind="stable")
    taken = np.zeros(g, dtype=bool)
    for c in order:
        ok = allowed[:, c] & ~taken
        if ok.any():
            r = int(np.flatnonzero(ok)[np.argmin(cost[ok, c])])
            out[r] = int(c)
            taken[r] = True
    return out


def landmark_center(lm: Tensor) -> Tensor:
    """(..., K, 2) -> (..., 2) centre of the landmark bounding box (NaN rows ignored)."""
    lo = torch.where(torch.isfinite(lm), lm, torch.full_like(lm, torch.inf)).amin(-2)
    hi = torch.where(torch.isfinite(lm), lm, torch.full_like(lm, -torch.inf)).amax(-2)
    return 0.5 * (lo + hi)


def landmark_box(lm: Tensor) -> Tensor:
    """(..., K, 2) -> (..., 4) ``(x0, y0, x1, y1)`` box of the finite points (NaN if none)."""
    fin = torch.isfinite(lm).all(-1, keepdim=True)
    lo = torch.where(fin, lm, torch.full_like(lm, torch.inf)).amin(-2)
    hi = torch.where(fin, lm, torch.full_like(lm, -torch.inf)).amax(-2)
    box = torch.cat([lo, hi], -1)
    return torch.where(torch.isfinite(box).all(-1, keepdim=True), box, torch.full_like(box, math.nan))


def box_size(box: Tensor) -> Tensor:
    """(..., 4) boxes -> (...) face size ``sqrt(w h)`` px."""
    return ((box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])).clamp_min(0).sqrt()


def _face_landmarks(face: FaceReconstruction) -> Tensor | None:
    lm = face.landmarks2d
    if lm is None or lm.ndim != 2 or lm.shape[-1] != 2:
        return None
    return lm.detach().to("cpu", torch.float64)


def face_center(face: FaceReconstruction) -> tuple[Tensor, bool]:
    """(2,) centre of a predicted face (px) and whether it is the face's own ``center`` (True)
    or the centre of its 2D-landmark box (False); NaN when it has neither."""
    if face.center is not None:
        return torch.as_tensor(face.center, dtype=torch.float64).detach().cpu().reshape(2), True
    lm = _face_landmarks(face)
    if lm is not None:
        return landmark_center(lm), False
    return torch.full((2,), math.nan, dtype=torch.float64), False


def face_box(face: FaceReconstruction) -> Tensor:
    """(4,) box of a predicted face's 2D landmarks (px), NaN without landmarks."""
    lm = _face_landmarks(face)
    return landmark_box(lm) if lm is not None else torch.full((4,), math.nan, dtype=torch.float64)


@dataclass(frozen=True)
class MatchRule:
    """When a predicted face counts as a GT face (see the module docstring).

    Attributes:
        rule: ``"center"`` or ``"iou"``.
        radius: centre rule: largest centre distance as a fraction of the GT face size
            (``sqrt(w h)`` of the GT 68-landmark box).
        min_iou: IoU rule: smallest IoU of the two 68-landmark boxes.
    """

    rule: str = "center"
    radius: float = 0.5
    min_iou: float = 0.5

    def __post_init__(self) -> None:
        if self.rule not in MATCH_RULES:
            raise ValueError(f"match rule must be one of {MATCH_RULES}, got {self.rule!r}")
        if not self.radius > 0 or not 0 < self.min_iou <= 1:
            raise ValueError(f"need radius > 0 and 0 < min_iou <= 1, got {self.radius}, {self.min_iou}")

    def describe(self) -> str:
        if self.rule == "center":
            return f"centre distance <= {self.radius:g} x GT face size (sqrt(w h) of the GT 68-landmark box)"
        return f"IoU of the 68-landmark boxes >= {self.min_iou:g}"

    def match(self, faces: list[FaceReconstruction], gt_lm68: Tensor, gt_centers: Tensor | None = None,
              scores: Tensor | np.ndarray | None = None) -> list[int | None]:
        """GT faces (``gt_lm68`` (G, 68, 2) px, optional ``gt_centers`` (G, 2) px, e.g.
        ``Sample.centers``) -> index into ``faces`` per GT face, or None."""
        gt = gt_lm68.detach().to("cpu", torch.float64).reshape(-1, *gt_lm68.shape[-2:])
        gt_box = landmark_box(gt)
        if self.rule == "iou":
            pb = torch.stack([face_box(f) for f in faces]) if faces else torch.zeros(0, 4, dtype=torch.float64)
            return match_faces(None, None, pred_boxes=pb, gt_boxes=gt_box, min_iou=self.min_iou, scores=scores)
        lm_c = 0.5 * (gt_box[:, :2] + gt_box[:, 2:])
        own_c = lm_c if gt_centers is None else gt_centers.detach().to("cpu", torch.float64).reshape(-1, 2)
        cs = [face_center(f) for f in faces]
        pc = torch.stack([c for c, _ in cs]) if cs else torch.zeros(0, 2, dtype=torch.float64)
        own = torch.tensor([o for _, o in cs], dtype=torch.bool)
        gc = torch.where(own[None, :, None], own_c[:, None, :], lm_c[:, None, :])  # (G, P, 2)
        return match_faces(pc, gc, self.radius * box_size(gt_box), scores=scores)


# ---------------------------------------------------------------------------- scored units
#: per-face fields of a Sample and their number of dimensions for one face
FACE_FIELDS = {"lm68": 2, "lm68_visible": 1, "lm5": 2, "lm68_3d": 2, "coeffs": 1, "vertices": 2,
               "vertices_cam": 2, "yaw": 0, "pose": 1, "occluded": 0, "centers": 1}
#: per-image fields and their number of dimensions for one image
IMAGE_FIELDS = {"image": 3, "parse": 2, "skin_mask": 2, "face_mask": 2, "occlusion_mask": 2, "depth": 2}
#: camera-dictionary entries that hold one value per view (the synthetic engine's weak camera)
_PER_VIEW_CAMERA = ("scale", "translation")


def _pick(value: Any, k: int, ndim: int) -> Any:
    """``value[k]`` when ``value`` carries one more leading dimension than one unit's."""
    if isinstance(value, Tensor) and value.ndim == ndim + 1:
        item = value[k]
        return item.item() if item.ndim == 0 and item.dtype == torch.bool else item
    return value


def unit_view(sample: Sample, k: int, unit_id: str, per_image: bool) -> Sample:
    """Sample ``k``-th view (``per_image``: sets / multi-view) or ``k``-th face (multi-face) of
    ``sample`` as a ``kind="single"`` sample keyed ``unit_id``: per-face fields indexed; image
    fields indexed for views and kept for multi-face images, except ``depth`` (NaN) and
    ``face_mask`` (False) outside the face's own pixels when ``meta["instance_map"]`` is there;
    per-view camera entries (the engine's weak ``scale`` / ``translation`` lists) picked;
    ``meta`` gains ``unit_of`` (the parent sample id) and ``unit_index``."""
    kw: dict[str, Any] = {f.name: getattr(sample, f.name) for f in fields(Sample)}
    kw.update(kind="single", sample_id=unit_id)
    for name, nd in FACE_FIELDS.items():
        kw[name] = _pick(kw[name], k, nd)
    if isinstance(sample.occluded, Tensor) and sample.occluded.ndim == 1:
        kw["occluded"] = bool(sample.occluded[k])
    if isinstance(sample.identity, Tensor):
        ident = sample.identity.reshape(-1)
        kw["identity"] = int(ident[k] if len(ident) > 1 else ident[0])
    meta = dict(sample.meta or {})
    meta.update(unit_of=sample.sample_id, unit_index=k)
    if per_image:
        for name, nd in IMAGE_FIELDS.items():
            kw[name] = _pick(kw[name], k, nd)
        cam = dict(sample.camera or {})
        views = sample.image.shape[0] if isinstance(sample.image, Tensor) and sample.image.ndim == 4 else None
        for key in _PER_VIEW_CAMERA:
            v = cam.get(key)
            if isinstance(v, (list, tuple)) and views is not None and len(v) == views and len(v) > 1:
                cam[key] = [v[k]]
        kw["camera"] = cam
    else:
        inst = meta.get("instance_map")
        if isinstance(inst, Tensor):
            own = inst.to(torch.long) == k
            if isinstance(sample.depth, Tensor) and sample.depth.shape == own.shape:
                kw["depth"] = torch.where(own.to(sample.depth.device), sample.depth,
                                          torch.full_like(sample.depth, math.nan))
            if isinstance(sample.face_mask, Tensor) and sample.face_mask.shape == own.shape:
                kw["face_mask"] = sample.face_mask & own.to(sample.face_mask.device)
    kw["meta"] = meta
    return Sample(**kw)


class ScoredUnits(list):
    """What ``iter_scored_faces`` returns: a list of ``(unit_id, face | None, unit sample)``
    plus ``false_positives`` (indices into ``Reconstruction.faces`` of predicted faces matched
    to no GT face; multi-face images only), ``missing`` (``unit_id -> reason`` for every unit
    whose face is None) and ``rule`` (the match rule, for multi-face images)."""

    def __init__(self, items=(), false_positives=(), missing=None, rule: MatchRule | None = None) -> None:
        super().__init__(items)
        self.false_positives: list[int] = list(false_positives)
        self.missing: dict[str, str] = dict(missing or {})
        self.rule = rule


def iter_scored_faces(reconstruction: Reconstruction | None, sample: Sample, *, views: bool = True,
                      rule: MatchRule | None = None, sample_id: str | None = None) -> ScoredUnits:
    """The units a per-face protocol scores for one sample (see the module docstring).

    Args:
        reconstruction: the method's output for the sample (None: every unit fails "no
            reconstruction").
        sample: one sample (``as_samples`` splits a batch).
        views: sets / multi-view samples: one unit per view (True) or one unit for the whole
            sample scored with the aggregated face ``faces[0]`` (False; e.g. a GT mesh shared
            by the views, as the identity GT of a set).
        rule: the match rule for multi-face images (default ``MatchRule()``).
        sample_id: the id to key units with (default ``sample.sample_id``).
    Returns:
        :class:`ScoredUnits`: ``[(unit_id, face | None, unit sample), ...]`` in GT order.
    """
    sid = sample_id if sample_id is not None else sample.sample_id
    rec = reconstruction
    if sample.kind == "multiface":
        rule = rule or MatchRule()
        gt = sample.lm68
        n_gt = gt.reshape(-1, *gt.shape[-2:]).shape[0] if isinstance(gt, Tensor) else (
            sample.centers.reshape(-1, 2).shape[0] if isinstance(sample.centers, Tensor) else 0)
        ids = [f"{sid}#{k}" for k in range(n_gt)]
        faces = [] if rec is None else list(rec.faces)
        units = ScoredUnits(rule=rule)
        if rec is None:
            why, match = "no reconstruction", [None] * n_gt
        elif not isinstance(gt, Tensor):
            why, match = "no GT landmarks (Sample.lm68) to match faces with", [None] * n_gt
        else:
            centers = sample.centers if isinstance(sample.centers, Tensor) else None
            why, match = "face not detected", rule.match(faces, gt, centers)
        for k, uid in enumerate(ids):
            face = None if match[k] is None else faces[match[k]]
            if face is None:
                units.missing[uid] = why
            units.append((uid, face, unit_view(sample, k, uid, per_image=False)))
        if isinstance(gt, Tensor):
            matched = {m for m in match if m is not None}
            units.false_positives = [j for j in range(len(faces)) if j not in matched]
        return units
    if sample.kind in ("set", "multiview") and views:
        n = _num_views(sample)
        units = ScoredUnits()
        per_view = None if rec is None else rec.per_view
        for k in range(n):
            uid = f"{sid}#v{k}"
            if rec is None:
                face, why = None, "no reconstruction"
            elif per_view is None:
                face, why = rec.face, None
            elif k < len(per_view):
                face, why = per_view[k], None
            else:
                face, why = None, f"no reconstruction for view {k} ({len(per_view)} per-view faces)"
            if why:
                units.missing[uid] = why
            units.append((uid, face, unit_view(sample, k, uid, per_image=True)))
        return units
    face = None if rec is None else rec.face
    units = ScoredUnits([(sid, face, replace(sample, sample_id=sid))])
    if face is None:
        units.missing[sid] = "no reconstruction"
    return units


def _num_views(sample: Sample) -> int:
    """Views of a set / multi-view sample (from the images, else the per-face fields)."""
    if isinstance(sample.image, Tensor) and sample.image.ndim == 4:
        return int(sample.image.shape[0])
    for name, nd in {**FACE_FIELDS, **IMAGE_FIELDS}.items():
        v = getattr(sample, name)
        if isinstance(v, Tensor) and v.ndim == nd + 1:
            return int(v.shape[0])
    return 1


class FalsePositiveCounter:
    """Mixin for per-face protocols: DDP-safe per-image counts of predicted faces matched to no
    GT face (multi-face images), deduplicated by image id like the records."""

    def _add_fp_states(self) -> None:
        self.add_state("fp_id_bytes", default=[], dist_reduce_fx="cat")  # type: ignore[attr-defined]
        self.add_state("fp_id_len", default=[], dist_reduce_fx="cat")  # type: ignore[attr-defined]
        self.add_state("fp_counts", default=[], dist_reduce_fx="cat")  # type: ignore[attr-defined]

    def record_false_positives(self, image_id: str, count: int) -> None:
        dev = self.device  # type: ignore[attr-defined]
        b, n = encode_strings([image_id], dev)
        self.fp_id_bytes.append(b)  # type: ignore[attr-defined]
        self.fp_id_len.append(n)  # type: ignore[attr-defined]
        self.fp_counts.append(torch.tensor([float(count)], dtype=torch.float64, device=dev))  # type: ignore[attr-defined]

    def false_positive_total(self) -> tuple[int, int]:
        """(false positives summed over the multi-face images, number of those images)."""
        ids = decode_strings(_cat_state(self.fp_id_bytes), _cat_state(self.fp_id_len))  # type: ignore[attr-defined]
        counts = _cat_state(self.fp_counts).to(torch.float64).tolist()  # type: ignore[attr-defined]
        first: dict[str, float] = {}
        for i, c in zip(ids, counts):
            first.setdefault(i, c)
        return int(sum(first.values())), len(first)
