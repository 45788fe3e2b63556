"""Scan-based protocols: MICC / Deng (point-to-plane RMSE after ICP with scale) and NoW
(scan-to-mesh distances after landmark Procrustes + ICP refinement), with the metrical NoW
variant (no scale).

Units: one per sample with ``Reconstruction.face`` (the aggregated face for sets / videos)
when the sample has one scan ``(P, 3)``; with one scan per view / per face (``scan_vertices``
``(U, P, 3)``, ``scan_landmarks7`` ``(U, 7, 3)``, ``meta["scan_nose_tip"]`` ``(U, 3)``) one unit
per view (``"<id>#v<k>"`` scored with ``Reconstruction.per_view[k]``) or per GT face of a
multi-face image (``"<id>#<k>"``, faces matched by centre), through the project's one matcher
(``metrics.matching.iter_scored_faces``).

Inputs: the unit's face in millimetres, model
frame, with its 3D landmarks (``FaceReconstruction.landmarks3d`` as 68 iBUG points or NoW's
own 7 points, or ``landmark_indices``); GT from ``Sample.scan_vertices`` (mm),
``Sample.scan_landmarks7`` (NoW order, mm) and, for MICC, the scan's nose tip (``nose_tips=``
argument of ``update``, or ``Sample.meta["scan_nose_tip"]`` from an annotation file, or the
named ``max_z`` fallback) and optionally ``Sample.meta["scan_landmarks68"]``. Alignment: ICP
from several starts, the best kept by the protocol's own residual, MICC refined on its
point-to-plane residual (``reference`` module docstring). The batched torch path
(``backend="torch"``, default, CPU or CUDA: the metric's device) and the open3d/scipy
reference (``backend="reference"``) give the same numbers (tests check 1e-3 mm).
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
from .base import ProtocolMetric, _cat_state, ced_curve, decode_strings, encode_strings, face_failure, mean_std, pair_up
from .geometry import IBUG68_NOSE_TIP, NOW7_FROM_IBUG68
from .reference import FitOptions, micc_reference, now_reference
from .result import Curve, MetricValue
from .scanfit import NOW_SEARCHES, check_search, micc_fit_torch, now_fit_torch


def scan_units(rec: Reconstruction | None, sample: Sample, sid: str
               ) -> list[tuple[str, FaceReconstruction | None, Sample, str | None, int]]:
    """``(unit id, face, unit sample, failure, unit index)`` per scored unit (module docstring):
    the unit sample carries that unit's scan, scan landmarks and scan nose tip."""
    from dataclasses import replace

    from .matching import iter_scored_faces

    scan = sample.scan_vertices
    if not (isinstance(scan, Tensor) and scan.ndim == 3):
        face = rec.face if rec is not None else None
        return [(sid, face, sample, None if rec is not None else "no reconstruction", 0)]
    units = iter_scored_faces(rec, sample, views=True, sample_id=sid)
    slm = sample.scan_landmarks7
    meta = sample.meta if isinstance(sample.meta, dict) else {}
    nose = meta.get("scan_nose_tip")
    out = []
    for j, (uid, face, view) in enumerate(units):
        if j >= len(scan):
            out.append((uid, face, view, f"no GT scan for unit {j} ({len(scan)} scans)", j))
            continue
        umeta = dict(view.meta or {})
        if isinstance(nose, Tensor) and nose.ndim == 2:
            umeta["scan_nose_tip"] = nose[j]
        unit = replace(view, scan_vertices=scan[j], meta=umeta,
                       scan_landmarks7=slm[j] if isinstance(slm, Tensor) and slm.ndim == 3 else slm)
        out.append((uid, face, unit, units.missing.get(uid) if face is None else None, j))
    return out


def _scan_failure(scan: Any) -> str | None:
    if scan is None:
        return "no GT scan (Sample.scan_vertices)"
    if not isinstance(scan, Tensor) or scan.ndim != 2 or scan.shape[-1] != 3 or scan.shape[0] == 0:
        return f"GT scan must be a non-empty (P, 3) tensor, got {getattr(scan, 'shape', type(scan))}"
    if not torch.isfinite(scan).all():
        return "GT scan has non-finite points"
    return None


def _landmarks7(face: FaceReconstruction) -> tuple[Tensor | None, str | None]:
    """The 7 NoW landmarks of a predicted face: the method's own 7 points
    (``landmarks3d`` with 7 rows, NoW order: the official interface) or iBUG indices
    ``NOW7_FROM_IBUG68`` of its 68 3D landmarks."""
    lm = face.landmarks_3d()
    if lm is None:
        return None, "no 3D landmarks (landmark_indices or landmarks3d)"
    if tuple(lm.shape) == (7, 3):
        lm7 = lm
    elif tuple(lm.shape) == (68, 3):
        lm7 = lm[list(NOW7_FROM_IBUG68)]
    else:
        return None, f"3D landmarks must be (68, 3) iBUG or (7, 3) NoW order, got {tuple(lm.shape)}"
    if not torch.isfinite(lm7).all():
        return None, "non-finite 3D landmarks"
    return lm7, None


def _landmarks68(face: FaceReconstruction) -> Tensor | None:
    """The prediction's 68 iBUG 3D landmarks (``landmarks3d`` with 68 rows, else the vertices
    at ``landmark_indices``), or None."""
    lm = face.landmarks_3d()
    if lm is not None and tuple(lm.shape) == (68, 3):
        return lm
    if face.vertices is not None and face.landmark_indices is not None and tuple(face.landmark_indices.shape) == (68,):
        return face.vertices[face.landmark_indices]
    return None


def _groups(sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive index groups whose summed sizes stay under ``budget`` (at least one each)."""
    out: list[list[int]] = []
    cur: list[int] = []
    tot = 0
    for i, n in enumerate(sizes):
        if cur and tot + n > budget:
            out.append(cur)
            cur, tot = [], 0
        cur.append(i)
        tot += n
    if cur:
        out.append(cur)
    return out


class _ScanProtocol(ProtocolMetric):
    """Shared plumbing: validation, grouping pairs into batches, backend choice."""

    def __init__(self, backend: str = "torch", with_scale: bool = True, max_iter: int = 100, tol: float = 1e-6,
                 max_corr_mm: float | None = None, initial_alignment: str = "auto", max_rows: int = 2_000_000,
                 n_starts: int = 3, start_angle_deg: float = 10.0, refine_iter: int = 30, **kwargs: Any) -> None:
        """Options common to the scan protocols: ``backend`` "torch" (batched, the metric's
        device) or "reference" (open3d / scipy); ``with_scale`` isotropic scale in the
        alignment; ``max_iter`` / ``tol`` (mm) the ICP stopping rule (``max_iter=0``: the initial
        alignment only); ``max_corr_mm`` ignore farther correspondences in the ICP fit;
        ``initial_alignment`` "auto" (landmarks / nose tip / centroids) or "none" (predictions
        already in the scan frame); ``n_starts`` / ``start_angle_deg`` the ICP starts and
        ``refine_iter`` the MICC point-to-plane refinement (``reference.FitOptions``);
        ``max_rows`` scan points evaluated together (all starts counted)."""
        super().__init__(**kwargs)
        if backend not in ("torch", "reference"):
            raise ValueError(f"backend must be 'torch' or 'reference', got {backend!r}")
        if initial_alignment not in ("auto", "none"):
            raise ValueError(f"initial_alignment must be 'auto' or 'none', got {initial_alignment!r}")
        self.backend = backend
        self.initial_alignment = initial_alignment
        self.opts = FitOptions(with_scale=with_scale, max_iter=max_iter, tol=tol, max_corr_mm=max_corr_mm,
                               n_starts=n_starts, start_angle_deg=start_angle_deg, refine_iter=refine_iter)
        self.max_rows = max_rows

    def _base_config(self) -> dict[str, Any]:
        return {"with_scale": self.opts.with_scale, "max_iter": self.opts.max_iter, "tol_mm": self.opts.tol,
                "max_corr_mm": self.opts.max_corr_mm, "initial_alignment": self.initial_alignment,
                "n_starts": self.opts.n_starts if self.opts.max_iter > 0 else 1,
                "start_angle_deg": self.opts.start_angle_deg}

    def _row_cost(self, n_points: int) -> int:
        """Scan rows a pair occupies in the batched fit (every start has its own)."""
        return n_points * (self.opts.n_starts if self.opts.max_iter > 0 else 1)

    def _work_device(self) -> torch.device:
        return self.device if self.backend == "torch" else torch.device("cpu")


#: where MICC's scan nose tip came from, per record (``MICCRMSE`` state ``rec_nose_src``)
NOSE_SOURCES = ("given", "annotation", "max_z")


def subject_of(sample: Sample) -> str:
    """The subject a sample shows, for per-subject pooling: ``Sample.meta["subject"]``, else
    ``Sample.identity``, else the sample id (every sample its own subject)."""
    meta = sample.meta if isinstance(sample.meta, dict) else {}
    if meta.get("subject") not in (None, ""):
        return str(meta["subject"])
    if sample.identity is not None:
        ident = sample.identity.item() if isinstance(sample.identity, Tensor) else sample.identity
        return f"identity:{ident}"
    return sample.sample_id


class MICCRMSE(_ScanProtocol):
    """MICC Florence / Deng'19 protocol: point-to-plane RMSE (mm) per reconstruction, pooled per
    subject.

    Per sample (a video frame, or a subject's image set with its aggregated face): crop the GT
    scan to ``radius`` mm around its nose tip (optionally drop points more than
    ``forehead_cut`` mm above the nose tip along ``up``, for meshes without a forehead);
    initialise the similarity from landmarks when the scan has them -- 68 iBUG points
    (``Sample.meta["scan_landmarks68"]``) against the prediction's 68, else NoW's 7
    (``Sample.scan_landmarks7``) against the prediction's 7 -- else by moving the predicted
    nose tip (68-landmark 30) onto the scan's, else centroid onto centroid; ICP with isotropic
    scale (``with_scale``) from ``n_starts`` starts, at most ``max_iter`` iterations each (stop
    when the RMS correspondence residual changes by < ``tol`` mm), the start with the lowest
    point-to-plane RMSE refined on that residual (``reference`` module docstring); then for
    every kept scan point the point-to-plane distance |(x - v) . n_v| to its closest predicted
    vertex v (n_v: v's normal, the normalised sum of adjacent unit face normals); RMSE over the
    kept points.

    Dataset: ``rmse`` = mean +- std over *subjects* of each subject's mean RMSE over its
    frames / videos (what Deng and Genova report; ``subject_of`` gives a sample's subject),
    ``rmse_frames`` = mean +- std over the per-sample values. Per sample: ``rmse``,
    ``n_points`` keyed by sample id (``"micc/<setting>/<subject>/<frame>"`` from the reader),
    plus the per-subject table ``per_sample["rmse_subject"]``. Units: mm.
    """

    name: ClassVar[str] = "micc"
    value_names: ClassVar[tuple[str, ...]] = ("rmse", "n_points")
    units: ClassVar[dict[str, str]] = {"rmse": "mm", "n_points": "", "rmse_frames": "mm"}
    sample_metrics: ClassVar[dict[str, str | None]] = {"rmse": "rmse", "rmse_frames": "rmse"}

    def __init__(self, radius: float = 95.0, forehead_cut: float | None = None, up: Sequence[float] = (0.0, 1.0, 0.0),
                 nose_tip: str = "auto", search: str = "auto", **kwargs: Any) -> None:
        """``nose_tip``: where the scan's nose tip comes from when ``update`` gets none:
        "annotation" (``Sample.meta["scan_nose_tip"]``, written by the MICC reader from an
        annotation file; a failure when absent; "meta" is an alias), "max_z" (the scan point
        with the largest z: frontal scans in the conventions' frame, z toward the viewer) or
        "auto" (the annotation when present, else the max_z fallback; ``config`` counts the
        samples that used it). ``search``: the torch backend's closest-vertex search
        (``scanfit.micc_fit_torch``): "auto", "kdtree" or "grid" -- exact either way, so it is
        not part of the protocol's config."""
        super().__init__(**kwargs)
        nose_tip = "annotation" if nose_tip == "meta" else nose_tip
        if nose_tip not in ("annotation", "max_z", "auto"):
            raise ValueError(f"nose_tip must be 'annotation' ('meta'), 'max_z' or 'auto', got {nose_tip!r}")
        self.search = check_search(search)
        self.radius = float(radius)
        self.forehead_cut = forehead_cut
        self.up = tuple(float(u) for u in up)
        self.nose_tip = nose_tip
        self.add_state("rec_subject_bytes", default=[], dist_reduce_fx="cat")
        self.add_state("rec_subject_len", default=[], dist_reduce_fx="cat")
        self.add_state("rec_nose_src", default=[], dist_reduce_fx="cat")

    def config(self) -> dict[str, Any]:
        return {"radius_mm": self.radius, "forehead_cut_mm": self.forehead_cut, "up": list(self.up),
                "nose_tip": self.nose_tip, "backend": self.backend, "pooling": "mean per subject, then over subjects",
                "refine": "point-to-plane Gauss-Newton" if self.opts.refine_iter > 0 and self.opts.max_iter > 0
                else "none", "refine_iter": self.opts.refine_iter, **self._base_config()}

    def _nose(self, sample: Sample, given: Tensor | None) -> tuple[Tensor | None, int]:
        """(nose tip (3,) or None, index into ``NOSE_SOURCES``)."""
        if given is not None:
            return torch.as_tensor(given, dtype=torch.float64).reshape(3), 0
        meta = sample.meta if isinstance(sample.meta, dict) else {}
        if meta.get("scan_nose_tip") is not None and self.nose_tip != "max_z":
            return torch.as_tensor(meta["scan_nose_tip"], dtype=torch.float64).reshape(3), 1
        if self.nose_tip in ("max_z", "auto") and sample.scan_vertices is not None:
            return sample.scan_vertices[int(torch.argmax(sample.scan_vertices[:, 2]))].to(torch.float64), 2
        return None, 2

    def _put(self, sid: str, subject: str, nose_src: int, values: list[float], reason: str) -> None:
        """One record plus its subject and nose-tip source (states kept aligned with records)."""
        self.record([sid], [values], [reason])
        sb, sl = encode_strings([subject], self.device)
        self.rec_subject_bytes.append(sb)
        self.rec_subject_len.append(sl)
        self.rec_nose_src.append(torch.tensor([float(nose_src)], dtype=torch.float64, device=self.device))

    @staticmethod
    def _init_landmarks(face: FaceReconstruction, sample: Sample) -> tuple[Tensor | None, Tensor | None]:
        """(prediction, scan) landmarks for the initial similarity: 68 iBUG points when both
        have them, else NoW's 7; (None, None) when the scan has none."""
        meta = sample.meta if isinstance(sample.meta, dict) else {}
        lm = _landmarks68(face)
        s68 = meta.get("scan_landmarks68")
        if s68 is not None and lm is not None:
            s68 = torch.as_tensor(s68, dtype=torch.float64)
            if tuple(s68.shape) == (68, 3):
                return lm.to(torch.float64), s68
        slm = sample.scan_landmarks7
        lm7, _ = _landmarks7(face)
        if lm7 is not None and slm is not None and tuple(slm.shape) == (7, 3):
            return lm7.to(torch.float64), slm.to(torch.float64)
        return None, None

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction, batch: Sample | Sequence[Sample],
               nose_tips: Sequence[Tensor] | Tensor | None = None) -> None:
        pairs = pair_up(reconstructions, batch)
        dev = self._work_device()
        jobs: list[dict[str, Any]] = []
        units = []
        for k, (rec, whole) in enumerate(pairs):
            sid = whole.sample_id or (rec.sample_id if rec else f"#{k}")
            for uid, face, sample, missing, j in scan_units(rec, whole, sid):
                given = None if nose_tips is None else nose_tips[k]
                if isinstance(given, Tensor) and given.ndim == 2 and uid != sid:
                    given = given[j]
                units.append((uid, face, sample, missing, given, subject_of(sample) or sid))
        for sid, face, sample, missing, given, subject in units:
            reason = missing or face_failure(face) or _scan_failure(sample.scan_vertices)
            nose, src = None, 2
            if reason is None:
                nose, src = self._nose(sample, given)
                if nose is None or not torch.isfinite(nose).all():
                    reason = "no scan nose tip (update(nose_tips=...) or Sample.meta['scan_nose_tip'])"
            if reason is not None:
                self._put(sid, subject, src, [math.nan, math.nan], reason)
                continue
            assert face is not None and nose is not None
            plm, slm = self._init_landmarks(face, sample)
            lm68 = _landmarks68(face)
            jobs.append({"id": sid, "subject": subject, "src": src,
                         "v": face.vertices.to(dev, torch.float64), "f": face.triangles.to(dev).long(),
                         "scan": sample.scan_vertices.to(dev, torch.float64), "nose": nose.to(dev),
                         "plm": None if plm is None else plm.to(dev), "slm": None if slm is None else slm.to(dev),
                         "pnose": None if lm68 is None else lm68[IBUG68_NOSE_TIP].to(dev, torch.float64)})
        for group in _groups([self._row_cost(len(j["scan"])) for j in jobs], self.max_rows):
            self._score([jobs[i] for i in group])

    def _score(self, jobs: list[dict[str, Any]]) -> None:
        if self.backend == "reference":
            rows = []
            for j in jobs:
                r = micc_reference(j["v"].numpy(), j["f"].numpy(), j["scan"].numpy(), j["nose"].numpy(), self.radius,
                                   self.forehead_cut, self.up,
                                   None if j["plm"] is None else j["plm"].numpy(),
                                   None if j["slm"] is None else j["slm"].numpy(),
                                   None if j["pnose"] is None else j["pnose"].numpy(), self.opts,
                                   self.initial_alignment)
                rows.append(torch.from_numpy(r.distances))
        else:
            fit = micc_fit_torch([j["v"] for j in jobs], [j["f"] for j in jobs], [j["scan"] for j in jobs],
                                 [j["nose"] for j in jobs], self.radius, self.forehead_cut, self.up,
                                 [j["plm"] for j in jobs], [j["slm"] for j in jobs], [j["pnose"] for j in jobs],
                                 self.opts, self.initial_alignment, search=self.search)
            rows = fit.distances
        for j, d in zip(jobs, rows):
            if len(d) == 0:
                self._put(j["id"], j["subject"], j["src"], [math.nan, 0],
                          f"no scan point within {self.radius} mm of the nose tip")
            else:
                self._put(j["id"], j["subject"], j["src"], [float(d.double().pow(2).mean().sqrt()), len(d)], "")

    def _aux(self, keep: list[int]) -> tuple[list[str], np.ndarray]:
        """Subjects and nose-tip sources of the kept records (raw record order -> ``keep``)."""
        subjects = decode_strings(_cat_state(self.rec_subject_bytes), _cat_state(self.rec_subject_len))
        src = _cat_state(self.rec_nose_src).to(torch.float64).numpy()
        return [subjects[i] for i in keep], src[keep]

    def summarise(self, ids, values, reasons, keep):
        ok = np.array([not r for r in reasons], dtype=bool)
        n_failed = int((~ok).sum())
        subjects, _ = self._aux(keep)
        per_subject = subject_means(subjects, values[:, 0], ok)
        scored = np.array([v for v in per_subject.values() if math.isfinite(v)])
        failed_subjects = sum(1 for v in per_subject.values() if not math.isfinite(v))
        rmse = values[ok, 0]
        metrics = {"rmse": mean_std(scored, failed_subjects, "mm"),
                   "rmse_frames": mean_std(rmse, n_failed, "mm")}
        return metrics, {"rmse_ced": ced_curve(rmse, n_failed, 5.0, x_label="RMSE (mm)")}

    def compute(self):
        res = super().compute()
        ids, values, reasons, keep = self.records()
        subjects, src = self._aux(keep)
        ok = np.array([not r for r in reasons], dtype=bool)
        res.per_sample["rmse_subject"] = {k: v for k, v in subject_means(subjects, values[:, 0], ok).items()
                                          if math.isfinite(v)}
        res.config["nose_tip_sources"] = {name: int((src[ok] == i).sum()) for i, name in enumerate(NOSE_SOURCES)}
        res.config["n_subjects"] = len(set(subjects))
        return res


def subject_means(subjects: Sequence[str], values: np.ndarray, ok: np.ndarray) -> dict[str, float]:
    """Mean of the scored values of each subject (NaN for a subject with none), in order of
    first appearance."""
    acc: dict[str, list[float]] = {}
    for sub, v, good in zip(subjects, values, ok):
        acc.setdefault(sub, [])
        if good:
            acc[sub].append(float(v))
    return {k: (float(np.mean(v)) if v else math.nan) for k, v in acc.items()}


class NoWScanToMesh(_ScanProtocol):
    """NoW challenge protocol (Sanyal et al. 2019): unsigned scan-to-mesh distances (mm).

    Per sample: crop the GT scan to the sphere of radius 1.4 (outer-eye distance + nose
    distance) / 2 around nose_bottom + 0.3 (nose_bridge - nose_bottom) (nose_bridge: midpoint
    of the inner eye corners; 7 GT landmarks in NoW order); similarity Procrustes of the
    prediction's 7 landmarks onto the scan's -- the method's own 7 points when it gives them
    (``FaceReconstruction.landmarks3d`` with 7 rows, NoW order, the official interface), else
    iBUG 36, 39, 42, 45, 33, 48, 54 of its 68 3D landmarks; refinement of scale / rotation /
    translation by ICP against the closest points on the predicted triangles (minimising the
    summed squared scan-to-mesh distance) from ``n_starts`` starts, the lowest RMS distance
    kept; then the distance from every kept scan point to the predicted surface. Per sample:
    median, mean, std of those distances. Dataset: median, mean, std over all scan points of
    all samples pooled (the median from a 0.01 mm histogram, linearly interpolated).
    ``with_scale=False`` gives the metrical variant in the official code's order of operations
    (``NoWMetrical``). Units: predictions and scans in millimetres (the official scripts take
    the prediction's unit as an argument and convert it to mm first); distances in mm.
    """

    name: ClassVar[str] = "now"
    value_names: ClassVar[tuple[str, ...]] = ("median", "mean", "std", "n_points")
    units: ClassVar[dict[str, str]] = {"median": "mm", "mean": "mm", "std": "mm", "n_points": ""}
    hist_bin: ClassVar[float] = 0.01
    hist_max: ClassVar[float] = 20.0

    def __init__(self, radius_factor: float = 1.4, centre_factor: float = 0.3, search: str = "auto",
                 **kwargs: Any) -> None:
        """``search``: the torch backend's closest-point-on-triangle search
        (``scanfit.now_fit_torch``): "auto", "numba" or "grid" -- exact either way, so it is not
        part of the protocol's config."""
        super().__init__(**kwargs)
        self.search = check_search(search, NOW_SEARCHES)
        self.radius_factor = float(radius_factor)
        self.centre_factor = float(centre_factor)
        self.n_bins = round(self.hist_max / self.hist_bin) + 1  # last bin: >= hist_max
        self.add_state("rec_hist", default=[], dist_reduce_fx="cat")

    def config(self) -> dict[str, Any]:
        return {"radius_factor": self.radius_factor, "centre_factor": self.centre_factor, "backend": self.backend,
                "histogram_bin_mm": self.hist_bin, **self._base_config()}

    def _hist(self, d: Tensor | None) -> Tensor:
        h = torch.zeros(self.n_bins, dtype=torch.float64)
        if d is not None and len(d):
            b = torch.clamp((d.double().cpu() / self.hist_bin).floor().long(), 0, self.n_bins - 1)
            h.index_add_(0, b, torch.ones(len(b), dtype=torch.float64))
        return h

    def _put(self, sid: str, d: Tensor | None, reason: str) -> None:
        if d is None or reason:
            self.record([sid], [[math.nan] * 3 + [0]], [reason])
            self.rec_hist.append(self._hist(None).to(self.device))
            return
        dd = d.double().cpu()
        vals = [float(torch.quantile(dd, 0.5)), float(dd.mean()), float(dd.std(unbiased=False)), len(dd)]
        self.record([sid], [vals], [""])
        self.rec_hist.append(self._hist(dd).to(self.device))

    def update(self, reconstructions: Sequence[Reconstruction] | Reconstruction,
               batch: Sample | Sequence[Sample]) -> None:
        pairs = pair_up(reconstructions, batch)
        dev = self._work_device()
        jobs: list[dict[str, Any]] = []
        units = []
        for k, (rec, whole) in enumerate(pairs):
            sid = whole.sample_id or (rec.sample_id if rec else f"#{k}")
            units += scan_units(rec, whole, sid)
        for sid, face, sample, missing, _ in units:
            reason = missing or face_failure(face) or _scan_failure(sample.scan_vertices)
            lm7 = None
            if reason is None:
                slm = sample.scan_landmarks7
                if slm is None or tuple(slm.shape) != (7, 3) or not torch.isfinite(slm).all():
                    reason = "no valid GT scan landmarks (Sample.scan_landmarks7, (7, 3))"
            if reason is None:
                assert face is not None
                lm7, reason = _landmarks7(face)
            if reason is not None:
                self._put(sid, None, reason)
                continue
            assert face is not None and lm7 is not None
            jobs.append({"id": sid, "v": face.vertices.to(dev, torch.float64), "f": face.triangles.to(dev).long(),
                         "scan": sample.scan_vertices.to(dev, torch.float64),
                         "slm": sample.scan_landmarks7.to(dev, torch.float64), "plm": lm7.to(dev, torch.float64)})
        for group in _groups([self._row_cost(len(j["scan"])) for j in jobs], self.max_rows):
            self._score([jobs[i] for i in group])

    def _score(self, jobs: list[dict[str, Any]]) -> None:
        if self.backend == "reference":
            rows = [torch.from_numpy(now_reference(j["v"].numpy(), j["f"].numpy(), j["scan"].numpy(),
                                                   j["slm"].numpy(), j["plm"].numpy(), self.opts,
                                                   self.radius_factor, self.centre_factor,
                                                   self.initial_alignment).distances)
                    for j in jobs]
        else:
            rows = now_fit_torch([j["v"] for j in jobs], [j["f"] for j in jobs], [j["scan"] for j in jobs],
                                 [j["slm"] for j in jobs], [j["plm"] for j in jobs], self.opts, self.radius_factor,
                                 self.centre_factor, self.initial_alignment, search=self.search).distances
        for j, d in zip(jobs, rows):
            self._put(j["id"], d, "" if len(d) else "no scan point inside the NoW crop sphere")

    def summarise(self, ids, values, reasons, keep):
        ok = np.array([not r for r in reasons], dtype=bool)
        n_failed = int((~ok).sum())
        n_ok = int(ok.sum())
        hist_all = torch.cat([h.reshape(-1).to("cpu", torch.float64) for h in
                              ([self.rec_hist] if isinstance(self.rec_hist, Tensor) else self.rec_hist)]) \
            if (isinstance(self.rec_hist, Tensor) or self.rec_hist) else torch.zeros(0, dtype=torch.float64)
        hist = hist_all.reshape(-1, self.n_bins)[keep][torch.from_numpy(ok)].sum(0).numpy() if n_ok else np.zeros(
            self.n_bins)
        n = values[ok, 3]
        total = float(n.sum())
        if total > 0:
            mean = float((n * values[ok, 1]).sum() / total)
            var = float((n * (values[ok, 2] ** 2 + values[ok, 1] ** 2)).sum() / total) - mean ** 2
            std = math.sqrt(max(var, 0.0))
            median = _hist_quantile(hist, 0.5, self.hist_bin)
        else:
            mean = std = median = math.nan
        metrics = {"median": MetricValue(median, None, n_ok, n_failed, "mm"),
                   "mean": MetricValue(mean, std, n_ok, n_failed, "mm"),
                   "std": MetricValue(std, None, n_ok, n_failed, "mm")}
        xs = np.linspace(0, 10, 201)
        cum = np.concatenate([[0.0], np.cumsum(hist)]) / max(total, 1.0)
        ys = np.interp(xs / self.hist_bin, np.arange(len(cum)), cum)
        curves = {"distance_ced": Curve(xs.tolist(), ys.tolist(), "scan-to-mesh distance (mm)", "fraction of points"),
                  "median_ced": ced_curve(values[ok, 0], n_failed, 5.0, x_label="per-sample median (mm)")}
        return metrics, curves


class NoWMetrical(NoWScanToMesh):
    """The metrical NoW variant (``scan2mesh_computations_metrical.py`` of the official
    evaluation), for methods that claim metric (millimetre) reconstructions. Order of
    operations as there: crop the scan; similarity Procrustes of the 7 landmarks (scale
    estimated); apply its rotation and translation with the scale replaced by the unit factor
    (1: predictions are in mm); rigid refinement (rotation and translation only) against the
    predicted surface; unsigned scan-to-mesh distances in mm."""

    name: ClassVar[str] = "now_metrical"

    def __init__(self, **kwargs: Any) -> None:
        kwargs["with_scale"] = False
        super().__init__(**kwargs)


def _hist_quantile(hist: np.ndarray, q: float, width: float) -> float:
    """Quantile of values binned in [k w, (k+1) w), linear inside the bin."""
    total = hist.sum()
    if total <= 0:
        return math.nan
    cum = np.cumsum(hist)
    target = q * total
    k = int(np.searchsorted(cum, target, side="left"))
    before = cum[k - 1] if k > 0 else 0.0
    frac = (target - before) / hist[k] if hist[k] > 0 else 0.0
    return float((k + frac) * width)
