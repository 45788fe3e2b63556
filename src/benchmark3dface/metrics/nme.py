"""AFLW2000-3D landmark protocol (3DDFA, Zhu et al.): 2D normalised mean error.

NME of one face = mean over the 68 points of the 2D Euclidean error, divided by
sqrt(w * h) of the GT 68-point bounding box, in percent. Faces are binned by |yaw| (degrees):
[0, 30], (30, 60], > 60 (3DDFA's code puts every |yaw| > 60, including the few > 90, in the
last bin); the reported "mean" is the mean of the three bin means (balanced over poses),
"all" the plain mean over faces. CED: fraction of faces with NME <= x.

GT: ``Sample.lm68`` (pixels, the conventions' image frame) by default, or the first two
columns of ``Sample.lm68_3d`` (``gt="lm68_3d"``, AFLW2000's ``pt3d_68``); yaw from
``Sample.yaw`` (radians). Predictions: ``FaceReconstruction.landmarks2d`` (68, 2) pixels.
Units (``metrics.matching.iter_scored_faces``, the project's one matcher): multi-face images
are scored per GT face, predicted faces matched by centre (Hungarian; a GT face without a
prediction within ``match_radius`` x its box size is a failure "face not detected"), keyed
``"<sample_id>#<k>"``; image sets / multi-view samples per view, view k scored with
``Reconstruction.per_view[k]`` (the aggregated face without per-view faces), keyed
``"<sample_id>#v<k>"``. Dense NME (``AFLW2000DenseNME``): the same on all GT vertices in image space.

Failures (no reconstruction, no / bad landmarks, face not detected) are never dropped
silently: every bin reports ``n`` scored and ``n_failed``, and ``coverage`` / ``coverage_<bin>``
give n scored / n seen in percent. By default the means are over the scored faces
(``score_all=False``); ``score_all=True`` scores every image 3DDFA-style, a failed face counted
at NME = ``failure_nme`` (default 100 %: an error as large as the face box) in every mean. Faces
whose *ground truth* is missing are never penalised (they are counted as failures only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..data.sample import Sample
from ..contracts import FaceReconstruction, Reconstruction
from ..geometry.camera import DENG_DISTANCE_MM, PerspectiveCamera, WeakPerspectiveCamera
from .base import ProtocolMetric, ced_curve, pair_up
from .matching import landmark_center
from .result import MetricValue

YAW_BINS_DEG = ((0.0, 30.0), (30.0, 60.0), (60.0, math.inf))
#: NME (%) a failed face is counted at under ``score_all=True``: an error as large as the face
FAILURE_NME_DEFAULT = 100.0


def _bin_name(prefix: str, lo: float, hi: float) -> str:
    return f"{prefix}_{int(lo)}_{int(hi)}" if math.isfinite(hi) else f"{prefix}_{int(lo)}_plus"


_COVERAGE = ("coverage",) + tuple(_bin_name("coverage", lo, hi) for lo, hi in YAW_BINS_DEG)
#: coverage numbers are better higher, and summarise no per-sample value
_COVERAGE_HIGHER: dict[str, str] = {k: "higher" for k in _COVERAGE}
_COVERAGE_NONE: dict[str, str | None] = {k: None for k in _COVERAGE}


def gt_missing(reason: str) -> bool:
    """Whether a failure reason says the *ground truth* is missing (never penalised)."""
    return reason.startswith("no ") and " GT" in reason


def nme_summary(values: np.ndarray, reasons: list[str], score_all: bool = False,
                failure_nme: float = FAILURE_NME_DEFAULT, ced_max: float = 10.0):
    """Yaw-bin summary of per-face (nme %, yaw deg) records (see the module docstring): bin
    means, ``nme_mean`` (mean of the three bin means), ``nme_all``, coverage per bin and
    overall (%), CED. With ``score_all`` a failed face counts as ``failure_nme`` in the means
    (not when its GT is missing)."""
    ok = np.array([not r for r in reasons], dtype=bool)
    penal = np.array([bool(r) and score_all and not gt_missing(r) for r in reasons], dtype=bool)
    scored = np.where(ok, values[:, 0], np.where(penal, failure_nme, np.nan))
    counted = ok | penal
    yaw = values[:, 1]
    bins = np.array([-1 if (b := yaw_bin(y)) is None else b for y in yaw])
    metrics: dict[str, MetricValue] = {}
    means = []
    for b, (lo, hi) in enumerate(YAW_BINS_DEG):
        sel = bins == b
        v = scored[sel & counted]
        n_ok, nf = int((sel & ok).sum()), int((sel & ~ok).sum())
        metrics[_bin_name("nme", lo, hi)] = MetricValue(float(v.mean()) if len(v) else math.nan,
                                                        float(v.std()) if len(v) else math.nan, n_ok, nf, "%")
        means.append(metrics[_bin_name("nme", lo, hi)].value)
    n_failed = int((~ok).sum())
    finite = [m for m in means if math.isfinite(m)]
    unbinned = int((bins[ok] < 0).sum())
    metrics["nme_mean"] = MetricValue(float(np.mean(means)) if len(finite) == 3 else math.nan,
                                      float(np.std(means)) if len(finite) == 3 else math.nan,
                                      int(ok.sum()) - unbinned, n_failed, "%")
    allv = scored[counted]
    metrics["nme_all"] = MetricValue(float(allv.mean()) if len(allv) else math.nan,
                                     float(allv.std()) if len(allv) else math.nan, int(ok.sum()), n_failed, "%")
    total = len(reasons)
    metrics["coverage"] = MetricValue(100.0 * ok.sum() / total if total else math.nan, None, int(ok.sum()),
                                      n_failed, "%")
    for b, (lo, hi) in enumerate(YAW_BINS_DEG):
        sel = bins == b
        nb = int(sel.sum())
        metrics[_bin_name("coverage", lo, hi)] = MetricValue(100.0 * (sel & ok).sum() / nb if nb else math.nan, None,
                                                             int((sel & ok).sum()), int((sel & ~ok).sum()), "%")
    # the 3DDFA headline (mean of the yaw-bin means) first: the leaderboard ranks on it
    metrics = {"nme_mean": metrics.pop("nme_mean"), **metrics}
    return metrics, {"nme_ced": ced_curve(values[ok, 0], n_failed, ced_max, x_label="NME (%)")}


def bbox_size(gt: Tensor) -> Tensor:
    """sqrt(w * h) of the bounding box of (..., K, 2) points."""
    w = gt[..., 0].amax(-1) - gt[..., 0].amin(-1)
    h = gt[..., 1].amax(-1) - gt[..., 1].amin(-1)
    return (w * h).clamp_min(0).sqrt()


def nme(pred: Tensor, gt: Tensor, norm: Tensor | None = None) -> Tensor:
    """Normalised mean error in percent: (..., K, 2) points -> (...). ``norm`` defaults to
    ``bbox_size(gt)``."""
    norm = bbox_size(gt) if norm is None else norm
    return 100.0 * (pred - gt).norm(dim=-1).mean(-1) / norm


def yaw_bin(yaw_deg: float) -> int | None:
    """0, 1, 2 for |yaw| in [0, 30], (30, 60], > 60 degrees; None if unknown."""
    a = abs(yaw_deg)
    if not math.isfinite(a):
        return None
    return 0 if a <= 30 else (1 if a <= 60 else 2)


def _faces_of(sample: Sample, field: str) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """GT landmarks (F, 68, 2), yaw (F,) radians and centres (F, 2) of a sample."""
    lm = sample.lm68 if field == "lm68" else (None if sample.lm68_3d is None else sample.lm68_3d[..., :2])
    if lm is None:
        return None, None, None
    lm = lm.reshape(-1, *lm.shape[-2:]).to(torch.float64)
    yaw = sample.yaw
    yaw = torch.full((len(lm),), math.nan, dtype=torch.float64) if yaw is None else \
        torch.as_tensor(yaw, dtype=torch.float64).reshape(-1)
    if len(yaw) == 1 and len(lm) > 1:
        yaw = yaw.expand(len(lm))
    centers = sample.centers.to(torch.float64).reshape(-1, 2) if sample.centers is not None else landmark_center(lm)
    return lm, yaw, centers


class _FaceMatching(ProtocolMetric):
    """Pairs every GT face with a predicted face through the project's one matcher
    (``metrics.matching.iter_scored_faces``): a single image is one unit, view k of a set /
    multi-view sample is ``"<id>#v<k>"`` (``Reconstruction.per_view[k]``, else the aggregated
    face), GT face k of a multi-face image is ``"<id>#<k>"`` (matched by centre, ``MatchRule``
    with ``match_radius``), and hands both to the protocol's scoring."""

    match_radius: float = 0.5

    def _pairs(self, reconstructions, batch, field: str):
        from .matching import MatchRule, iter_scored_faces

        rule = MatchRule("center", self.match_radius)
        for k, (rec, sample) in enumerate(pair_up(reconstructions, batch)):
            sid = sample.sample_id or (rec.sample_id if rec else f"#{k}")
            gt_all, _, _ = _faces_of(sample, field)
            if gt_all is None:
                yield sid, None, None, math.nan, f"no GT landmarks (Sample.{field})", sample, 0
                continue
            units = iter_scored_faces(rec, sample, views=True, rule=rule, sample_id=sid)
            for j, (uid, face, view) in enumerate(units):
                gt, yaw, _ = _faces_of(view, field)
                yd = math.degrees(float(yaw[0])) if yaw is not None and len(yaw) else math.nan
                g = None if gt is None else gt[0]
                if g is None:
                    yield uid, None, None, yd, f"no GT landmarks (Sample.{field})", sample, j
                elif face is None:
                    yield uid, None, g, yd, units.missing.get(uid, "no reconstruction"), sample, j
                else:
                    yield uid, face, g, yd, None, sample, j


class AFLW2000NME(_FaceMatching):
    """68-point 2D NME (%) with yaw bins and CED, 3DDFA's AFLW2000-3D protocol (see module)."""

    name: ClassVar[str] = "aflw2000_nme"
    value_names: ClassVar[tuple[str, ...]] = ("nme", "yaw_deg")
    optional_values: ClassVar[tuple[str, ...]] = ("yaw_deg",)
    units: ClassVar[dict[str, str]] = {"nme": "%", "yaw_deg": "deg"}
    sample_metrics: ClassVar[dict[str, str | None]] = {"nme_mean": "nme", "nme_all": "nme", **_COVERAGE_NONE}
    directions: ClassVar[dict[str, str]] = _COVERAGE_HIGHER

    def __init__(self, gt: str = "lm68", match_radius: float = 0.5, ced_max: float = 10.0, score_all: bool = False,
                 failure_nme: float = FAILURE_NME_DEFAULT, **kwargs: Any) -> None:
        """``gt``: "lm68" (``Sample.lm68``: the reader's landmark set, e.g. 3DDFA's re-annotated
        one) or "lm68_3d" (x, y of ``pt3d_68``); ``score_all`` / ``failure_nme``: 3DDFA-style
        scoring of every image, a failed face counted at ``failure_nme`` % (module docstring)."""
        super().__init__(**kwargs)
        if gt not in ("lm68", "lm68_3d"):
            raise ValueError(f"gt must be 'lm68' or 'lm68_3d', got {gt!r}")
        if not math.isfinite(failure_nme) or failure_nme < 0:
            raise ValueError(f"failure_nme must be a finite NME >= 0 (%), got {failure_nme!r}")
        self.gt = gt
        self.match_radius = float(match_radius)
        self.ced_max = float(ced_max)
        self.score_all = bool(score_all)
        self.failure_nme = float(failure_nme)

    def config(self) -> dict[str, Any]:
        return {"gt": self.gt, "normalisation": "sqrt(w*h) of the GT 68-point box", "yaw_bins_deg": "[0,30],(30,60],>60",
                "match_radius": self.match_radius,
                "failures": (f"scored at NME = {self.failure_nme:g} % (every image counted)" if self.score_all
                             else "excluded from the means; coverage = n scored / n seen"),
                "score_all": self.score_all, "failure_nme": self.failure_nme}

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction,
               batch: Sample | Sequence[Sample]) -> None:
        ids, vals, reasons = [], [], []
        for fid, face, gt, yd, why, _, _ in self._pairs(reconstructions, batch, self.gt):
            value = math.nan
            if why is None:
                assert face is not None and gt is not None
                lm = face.landmarks2d
                if face.failure:
                    why = face.failure
                elif lm is None:
                    why = "no 2D landmarks"
                elif tuple(lm.shape) != (68, 2):
                    why = f"landmarks2d must be (68, 2), got {tuple(lm.shape)}"
                elif not torch.isfinite(lm).all():
                    why = "non-finite 2D landmarks"
                else:
                    value = float(nme(lm.to(torch.float64).cpu(), gt.cpu()))
            ids.append(fid)
            vals.append([value, yd])
            reasons.append(why or "")
        self.record(ids, vals, reasons)

    def summarise(self, ids, values, reasons, keep):
        return nme_summary(values, reasons, self.score_all, self.failure_nme, self.ced_max)


def project_face(face: FaceReconstruction) -> Tensor | None:
    """Image-space (u, v) pixels of a face's vertices from its pose and camera dict
    (docs/conventions.md), through ``geometry.camera``'s projections: ``{"kind":
    "perspective", "focal", "principal": (cx, cy), "distance"}`` or ``{"kind": "weak", "scale",
    "principal": (cx, cy), "translation2d"?}``. None when the face lacks a pose or its camera
    kind is unknown."""
    if face.vertices is None or face.rotation is None:
        return None
    cam = face.camera or {}
    v = face.vertices.to(torch.float64) @ face.rotation.to(torch.float64).T
    cx, cy = (float(c) for c in cam.get("principal", (0.0, 0.0)))
    if cam.get("kind") == "perspective":
        if face.translation is None:
            return None
        camera = PerspectiveCamera(float(cam["focal"]), cx, cy, float(cam.get("distance", DENG_DISTANCE_MM)))
        return camera.project(v + face.translation.to(torch.float64))[:, :2]
    if cam.get("kind") == "weak":
        t2 = torch.tensor([float(c) for c in cam.get("translation2d", (0.0, 0.0))], dtype=torch.float64)
        scale = torch.tensor(float(cam["scale"]), dtype=torch.float64)
        return WeakPerspectiveCamera(principal=(cx, cy)).project(v, scale, t2)[:, :2]
    return None


class AFLW2000DenseNME(_FaceMatching):
    """Dense 2D NME (%) over all GT vertices in image space (PRNet / 3DDFA dense alignment).

    GT: ``Sample.meta["vertices_image"]`` ((N, 2+) pixels, per face for multi-face images) or
    explicit ``gt_vertices_image=`` in ``update``; prediction: its vertices projected with its
    own pose and camera (``project_face``), which requires the prediction to share the GT's
    topology (same N, same order). Normalised by sqrt(w h) of the GT 68-point box when the
    sample has 68 landmarks, else of the GT vertex box.
    """

    name: ClassVar[str] = "aflw2000_dense_nme"
    value_names: ClassVar[tuple[str, ...]] = ("nme", "yaw_deg")
    optional_values: ClassVar[tuple[str, ...]] = ("yaw_deg",)
    units: ClassVar[dict[str, str]] = {"nme": "%", "yaw_deg": "deg"}
    sample_metrics: ClassVar[dict[str, str | None]] = {"nme_mean": "nme", "nme_all": "nme", **_COVERAGE_NONE}
    directions: ClassVar[dict[str, str]] = _COVERAGE_HIGHER

    def __init__(self, match_radius: float = 0.5, ced_max: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.match_radius = float(match_radius)
        self.ced_max = float(ced_max)

    def config(self) -> dict[str, Any]:
        return {"normalisation": "sqrt(w*h) of the GT 68-point box (dense box without 68 points)",
                "match_radius": self.match_radius}

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction, batch: Sample | Sequence[Sample],
               gt_vertices_image: Sequence[Tensor] | None = None) -> None:
        ids, vals, reasons = [], [], []
        samples_seen: dict[int, int] = {}
        for fid, face, gt68, yd, why, sample, j in self._pairs(reconstructions, batch, "lm68"):
            k = samples_seen.setdefault(id(sample), len(samples_seen))
            value = math.nan
            dense = None
            if gt_vertices_image is not None:
                dense = gt_vertices_image[k]
            elif isinstance(sample.meta, dict):
                dense = sample.meta.get("vertices_image")
            if why is None and dense is None:
                why = "no dense GT (Sample.meta['vertices_image'] or gt_vertices_image=)"
            if why is None:
                assert face is not None
                dense_t = torch.as_tensor(dense, dtype=torch.float64)
                dense_t = dense_t[j] if sample.kind == "multiface" else dense_t
                dense_t = dense_t[..., :2]
                uv = project_face(face) if not face.failure else None
                if face.failure:
                    why = face.failure
                elif uv is None:
                    why = "prediction has no pose/camera to project its vertices"
                elif uv.shape != dense_t.shape:
                    why = f"topology mismatch: {tuple(uv.shape)} predicted vs {tuple(dense_t.shape)} GT points"
                elif not torch.isfinite(uv).all():
                    why = "non-finite projected vertices"
                else:
                    norm = bbox_size(gt68) if gt68 is not None else bbox_size(dense_t)
                    value = float(nme(uv, dense_t, norm))
            ids.append(fid)
            vals.append([value, yd])
            reasons.append(why or "")
        self.record(ids, vals, reasons)

    def summarise(self, ids, values, reasons, keep):
        return nme_summary(values, reasons, False, FAILURE_NME_DEFAULT, self.ced_max)
