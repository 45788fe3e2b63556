"""Depth-map protocol (Richardson et al. 2017, FRGC v2): absolute depth error in millimetres.

Depth maps are ``(H, W)`` float millimetres in the input image frame, NaN where there is no
surface (``FaceReconstruction.depth``, ``Sample.depth``), in the synthetic engine's
conventions (docs/conventions.md): perspective = camera depth ``D - z_world`` (positive);
weak perspective = ``-z_world`` (mm), which is *negative* over the front of a face (z points
toward the viewer). A pixel is therefore valid when its depth is finite (and inside an
optional mask) -- never by its sign.

Per scored unit (a single image, each view of a set / multi-view sample with per-view GT
depth ``(V, H, W)``, each GT face of a multi-face image, see ``metrics.matching``):

1. the prediction's depth map: ``FaceReconstruction.depth`` or, when absent, its mesh rendered
   with the project's rasterizer in its own pose and the sample's camera (``render_depth``);
2. the mask: GT valid AND prediction valid (AND, when methods are compared, valid for every
   compared method: ``compare_depth_methods``, or ``update(..., common_masks=...)``);
   ``coverage`` = scored pixels / GT-valid pixels;
3. the stated alignment: ``align="none"`` (default; absolute depths, e.g. the perspective
   camera depth of a method that predicts its translation) or ``"median"`` (each prediction
   shifted by the median of ``gt - pred`` over the mask; the setting for weak-perspective
   depth, whose origin is arbitrary, and for FRGC-style comparisons);
4. the mean and the ``quantile`` (0.9) of ``|pred - gt|`` over the mask.

Dataset: the mean over units of the per-unit mean and of the per-unit 90th percentile
(Richardson's "mean / 90 %" columns), the mean coverage, and the false positives of
multi-face images (predicted faces matched to no GT face).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..data.sample import Sample
from ..geometry.camera import (PerspectiveCamera, WeakPerspectiveCamera, camera_kind, camera_principal,
                               perspective_from_dict)
from ..contracts import FaceReconstruction, Reconstruction
from ..render.depthmap import perspective_depth_map, weak_depth_map
from .base import ProtocolMetric, as_samples, ced_curve, pair_up
from .matching import FalsePositiveCounter, MatchRule, iter_scored_faces
from .result import MetricValue, ProtocolResult

ALIGNMENTS = ("none", "median")


def valid_depth(depth: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pixels with a finite depth (and inside ``mask`` when given). The sign is no test:
    weak-perspective depth (``-z_world``) is negative over the front of the face."""
    ok = torch.isfinite(depth)
    return ok if mask is None else ok & mask.to(device=ok.device, dtype=torch.bool)


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
        ok = ok & valid_depth(p.to(gt.device), m)
    return ok


def depth_errors(pred: Tensor, gt: Tensor, mask: Tensor, align: str = "none") -> Tensor:
    """Absolute errors (mm) on ``mask`` (1-D tensor), after the alignment ``align``."""
    p = pred[mask].to(torch.float64)
    g = gt[mask].to(torch.float64)
    if align == "median" and len(p):
        p = p + torch.median(g - p)
    elif align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    return (p - g).abs()


def depth_stats(err: Tensor, q: float = 0.9) -> tuple[float, float]:
    """(mean, q-quantile) of absolute errors; NaN when empty."""
    if len(err) == 0:
        return math.nan, math.nan
    return float(err.mean()), float(torch.quantile(err, q))


def compare_depth(gt: Tensor, preds: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None,
                  align: str = "none") -> dict[str, tuple[float, float]]:
    """Several methods' depth maps for one sample: ``{method: (mean, p90)}`` in mm, all on the
    pixels valid for every method (``compare_depth_methods`` does it for whole test sets)."""
    common = common_valid_mask(gt, preds, masks)
    return {k: depth_stats(depth_errors(p.to(gt.device), gt, common, align)) for k, p in preds.items()}


# ---------------------------------------------------------------------------- rendering
def _image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = (int(s) for s in image_size)
    return h, w


def _camera_dict(camera: Mapping[str, Any] | PerspectiveCamera | WeakPerspectiveCamera | None) -> dict[str, Any]:
    if isinstance(camera, PerspectiveCamera):
        return {"kind": "perspective", "focal": camera.focal, "principal": (camera.cx, camera.cy),
                "distance": camera.distance}
    if isinstance(camera, WeakPerspectiveCamera):
        return {"kind": "weak", "principal": (camera.cx, camera.cy)}
    return dict(camera or {})


def _one(value: Any, what: str) -> Tensor:
    """A per-face camera value that may come as a one-element list (the engine's format)."""
    t = torch.as_tensor(value, dtype=torch.float32)
    if what == "scale":
        t = t.reshape(-1)
        if len(t) != 1:
            raise ValueError(f"weak-perspective scale must be one number, got {len(t)}")
        return t[0]
    t = t.reshape(-1, 2)
    if len(t) != 1:
        raise ValueError(f"weak-perspective translation must be one (tx, ty) pair, got {len(t)}")
    return t[0]


def render_depth(face: FaceReconstruction,
                 camera: Mapping[str, Any] | PerspectiveCamera | WeakPerspectiveCamera | None,
                 image_size: int | Sequence[int]) -> Tensor:
    """Depth map ``(H, W)`` (mm, NaN off the mesh) of a reconstructed face, rendered with the
    project's rasterizer (back faces culled) in the conventions of ``Sample.depth``.

    The mesh is posed with the face's own ``rotation`` (and ``translation``). The projection
    is the face's own camera dictionary when it names one (``face.camera["kind"]``), else the
    sample's ``camera`` (a ``Sample.camera`` dictionary in either spelling, or a camera
    object); missing intrinsics come from the sample's camera:

    - perspective: camera depth ``D - z_world`` with ``focal``, principal point and
      ``distance`` (Deng's camera, the global multi-face camera);
    - weak perspective: ``-z_world`` with the *face's* ``scale`` (px/mm) and ``translation2d``
      (or the engine's ``translation``) -- a pose the method estimated, never the sample's.

    Raises ``ValueError`` (one line saying why) when the face cannot be rendered.
    """
    h, w = _image_hw(image_size)
    if face.vertices is None or face.triangles is None:
        raise ValueError("no mesh to render")
    if face.rotation is None:
        raise ValueError("no pose (rotation) to render the mesh in")
    own = dict(face.camera or {})
    sample_cam = _camera_dict(camera)
    kind = camera_kind(own) or camera_kind(sample_cam)
    if kind is None:
        raise ValueError("no camera kind (face.camera / sample camera 'kind' or 'type')")
    verts = face.vertices.detach().to("cpu", torch.float32)
    rot = face.rotation.detach().to("cpu", torch.float32)
    tri = face.triangles.detach().to("cpu", torch.long)
    rotated = verts @ rot.T
    if kind == "perspective":
        cam = perspective_from_dict(own, w, h, fallback=sample_cam if camera_kind(sample_cam) == "perspective" else None)
        t = torch.zeros(3) if face.translation is None else face.translation.detach().to("cpu", torch.float32)
        return perspective_depth_map(rotated + t.reshape(1, 3), tri, cam)
    if "scale" not in own:
        raise ValueError("weak-perspective face without its own scale (FaceReconstruction.camera['scale'])")
    scale = _one(own["scale"], "scale")
    t2 = own.get("translation2d", own.get("translation", (0.0, 0.0)))
    principal = camera_principal(own) or camera_principal(sample_cam)
    cam = WeakPerspectiveCamera(w, h, principal)
    return weak_depth_map(rotated, tri, cam, scale, _one(t2, "translation"))


# ---------------------------------------------------------------------------- the protocol
#: one scored unit before its mask: (unit id, GT depth, predicted depth, failure reason)
_Unit = tuple[str, Tensor | None, Tensor | None, str | None]


class DepthError(FalsePositiveCounter, ProtocolMetric):
    """Mean and 90th-percentile absolute depth error (mm) on the GT-and-prediction valid mask,
    after the stated alignment (see the module docstring). Usable alone or in a comparison:
    ``compare_depth_methods`` (whole test sets) or ``update(..., common_masks=...)`` with the
    masks valid for every compared method (a sequence aligned with the samples, or a mapping
    unit id -> mask)."""

    name: ClassVar[str] = "depth"
    value_names: ClassVar[tuple[str, ...]] = ("mean", "p90", "n_pixels", "coverage")
    units: ClassVar[dict[str, str]] = {"mean": "mm", "p90": "mm", "n_pixels": "", "coverage": "",
                                       "false_positives": ""}
    directions: ClassVar[dict[str, str]] = {"coverage": "higher"}
    sample_metrics: ClassVar[dict[str, str | None]] = {"false_positives": None}

    def __init__(self, align: str = "none", quantile: float = 0.9, render_mesh: bool = True,
                 match_rule: str = "center", match_radius: float = 0.5, min_iou: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if align not in ALIGNMENTS:
            raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
        if not 0.0 < float(quantile) < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.align = align
        self.quantile = float(quantile)
        self.render_mesh = bool(render_mesh)
        self.rule = MatchRule(match_rule, match_radius, min_iou)
        self._add_fp_states()

    def config(self) -> dict[str, Any]:
        return {"align": self.align, "quantile": self.quantile,
                "valid": "finite GT and prediction depth (and the common mask when compared)",
                "prediction": "FaceReconstruction.depth, else the mesh rendered" if self.render_mesh
                else "FaceReconstruction.depth", "match": self.rule.describe()}

    # -- phase 1: every unit's GT and predicted depth -----------------------------------------
    def predicted_depth(self, face: FaceReconstruction, unit: Sample, shape: Sequence[int]
                        ) -> tuple[Tensor | None, str | None]:
        """The face's depth map, or its rendered mesh; ``(None, reason)`` when there is none."""
        if face.depth is not None:
            return face.depth, None
        if not self.render_mesh:
            return None, "no predicted depth map"
        try:
            return render_depth(face, unit.camera, tuple(shape)), None
        except ValueError as err:
            return None, f"no predicted depth map and its mesh cannot be rendered: {err}"

    def unit_depths(self, reconstructions: Sequence[Reconstruction] | Reconstruction,
                    batch: Sample | Sequence[Sample], depths: Mapping[str, Tensor] | None = None
                    ) -> list[tuple[int, int, _Unit]]:
        """``(sample index, unit index within the sample, unit)`` for every unit of the batch;
        records the false positives of multi-face images. ``depths``: predicted depth maps
        already known, by unit id (they win over the face's own / rendered one)."""
        out = []
        for k, (rec, sample) in enumerate(pair_up(reconstructions, batch)):
            sid = sample.sample_id or (rec.sample_id if rec else f"#{k}")
            views = isinstance(sample.depth, Tensor) and sample.depth.ndim == 3
            units = iter_scored_faces(rec, sample, views=views, rule=self.rule, sample_id=sid)
            if sample.kind == "multiface":
                self.record_false_positives(sid, len(units.false_positives))
            for j, (uid, face, view) in enumerate(units):
                gt, pred = view.depth, None
                why = units.missing.get(uid) if face is None else (face.failure or None)
                if why is None and gt is None:
                    why = "no GT depth (Sample.depth)"
                if why is None and depths is not None and uid in depths:
                    pred = depths[uid]
                elif why is None:
                    assert face is not None and gt is not None
                    pred, why = self.predicted_depth(face, view, gt.shape)
                if why is None and pred is not None and pred.shape != gt.shape:
                    why = f"depth shape {tuple(pred.shape)} != GT {tuple(gt.shape)}"
                out.append((k, j, (uid, gt, pred if why is None else None, why)))
        return out

    # -- phase 2: scores ------------------------------------------------------------------------
    def score_units(self, units: Sequence[_Unit], masks: Sequence[Tensor | None] | None = None) -> None:
        """Record every unit, each on its GT-and-prediction valid pixels (AND ``masks[i]``)."""
        ids, vals, reasons = [], [], []
        for i, (uid, gt, pred, why) in enumerate(units):
            v = [math.nan, math.nan, 0, 0.0]
            if why is None:
                assert gt is not None and pred is not None
                pred = pred.to(gt.device)
                gt_ok = valid_depth(gt)
                mask = gt_ok & valid_depth(pred)
                extra = None if masks is None else masks[i]
                if extra is not None:
                    mask = mask & extra.to(mask.device, torch.bool)
                err = depth_errors(pred, gt, mask, self.align)
                if len(err) == 0:
                    why = "no valid pixel"
                else:
                    m, p = depth_stats(err, self.quantile)
                    v = [m, p, len(err), len(err) / max(int(gt_ok.sum()), 1)]
            ids.append(uid)
            vals.append(v)
            reasons.append(why or "")
        self.record(ids, vals, reasons)

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction, batch: Sample | Sequence[Sample],
               common_masks: Sequence[Tensor | None] | Mapping[str, Tensor] | None = None,
               depths: Mapping[str, Tensor] | None = None) -> None:
        """Score a batch. ``common_masks``: extra masks (pixels valid for every compared method),
        a sequence aligned with the samples (``(V, H, W)`` for a multi-view sample) or a mapping
        unit id -> mask; ``depths``: precomputed predicted depth maps by unit id."""
        found = self.unit_depths(reconstructions, batch, depths)
        masks: list[Tensor | None] = []
        for k, j, (uid, gt, _, _) in found:
            m = None
            if isinstance(common_masks, Mapping):
                m = common_masks.get(uid)
            elif common_masks is not None and common_masks[k] is not None:
                m = common_masks[k]
                if gt is not None and m.ndim == gt.ndim + 1:  # (V, H, W) mask of a multi-view sample
                    m = m[j]
            masks.append(m)
        self.score_units([u for _, _, u in found], masks)

    def summarise(self, ids, values, reasons, keep):
        ok = np.array([not r for r in reasons], dtype=bool)
        nf = int((~ok).sum())

        def mv(col: int, unit: str) -> MetricValue:
            x = values[ok, col]
            return MetricValue(float(x.mean()) if len(x) else math.nan, float(x.std()) if len(x) else math.nan,
                               len(x), nf, unit)

        metrics = {"mean": mv(0, "mm"), "p90": mv(1, "mm"), "coverage": mv(3, "")}
        fp, images = self.false_positive_total()
        if images:
            metrics["false_positives"] = MetricValue(fp, None, images, 0, "")
        return metrics, {"mean_ced": ced_curve(values[ok, 0], nf, 10.0, x_label="mean depth error (mm)")}


def compare_depth_methods(reconstructions: Mapping[str, Sequence[Reconstruction] | Reconstruction],
                          batch: Sample | Sequence[Sample], **options: Any) -> dict[str, ProtocolResult]:
    """FRGC-style comparison (Richardson: "pixels which were denoted as valid by all the
    methods"): every method's ``DepthError`` (``options``: ``align``, ``quantile``,
    ``render_mesh``, match rule) on the same samples, each unit scored on the pixels where the
    GT and *every* method that produced a depth map for that unit are valid. A method without
    a depth map for a unit fails that unit (counted) and does not shrink the others' mask.
    Returns ``{method: ProtocolResult}``."""
    samples = as_samples(batch)
    probe = DepthError(**options)
    found = {name: probe.unit_depths(recs, samples) for name, recs in reconstructions.items()}
    common: dict[str, Tensor] = {}
    for units in found.values():
        for _, _, (uid, gt, pred, why) in units:
            if gt is None:
                continue
            ok = common.get(uid)
            ok = valid_depth(gt) if ok is None else ok
            if why is None and pred is not None:
                ok = ok & valid_depth(pred.to(gt.device))
            common[uid] = ok
    out = {}
    for name, recs in reconstructions.items():
        known = {uid: pred for _, _, (uid, _, pred, why) in found[name] if why is None and pred is not None}
        metric = DepthError(**options)
        metric.update(recs, samples, common_masks=common, depths=known)
        out[name] = metric.compute()
    return out
