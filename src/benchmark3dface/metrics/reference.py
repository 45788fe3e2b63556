"""Reference implementations of the scan protocols, one pair at a time, on numpy / scipy /
open3d. They define the protocols' numbers; the batched torch path (``scanfit``) must agree
with them (tests check 1e-3 mm on random pairs).

Finding the optimum: the reported number must not depend on where ICP happened to stop, so
both protocols run ICP from ``FitOptions.n_starts`` starts (the landmark / nose-tip
initialisation, then copies of it turned by +-``start_angle_deg`` about the prediction's own
vertical axis through the crop centroid, then about its horizontal axis, then about its depth
axis) and keep the start with the lowest value of the protocol's own residual (MICC: the
point-to-plane RMSE it reports; NoW: the RMS scan-to-mesh distance its ICP minimises). MICC's
ICP minimises point-to-*vertex* distances while it reports point-to-*plane* distances, so its
best start is then refined by Gauss-Newton on the reported point-to-plane residual itself
(``FitOptions.refine_iter`` iterations, closest vertices searched again at every iteration);
the alignment with the lowest reported RMSE seen wins. ``max_iter=0`` keeps the initial
alignment only (no starts, no refinement).

Units: millimetres. Similarities ``(s, R, t)`` map prediction -> scan: ``y = s R x + t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..geometry.mesh import umeyama as _umeyama
from ..geometry.mesh import vertex_normals as _vertex_normals


@dataclass
class FitOptions:
    """Options shared by the ICP-based protocols.

    Attributes:
        with_scale: isotropic scale in the initial Procrustes and in ICP (False: rigid).
        max_iter: ICP iterations at most (0: keep the initial alignment).
        tol: stop when the RMS correspondence residual (mm) changes by less than this.
        max_corr_mm: ignore correspondences farther than this (mm) when estimating the
            transform (None: use all). Distances reported are never trimmed.
        workers: threads for the reference KD-tree / raycasting queries.
        n_starts: ICP starts (1..7): the initial alignment, then copies turned by
            +-``start_angle_deg`` about the prediction's y (vertical) axis, x axis, z axis
            through the crop centroid (see ``start_rotations``); the start with the lowest
            protocol residual wins.
        start_angle_deg: the turn of the extra starts (degrees).
        refine_iter: MICC only: Gauss-Newton iterations on the reported point-to-plane residual
            after ICP (0: none). Stops early when the RMSE changes by less than ``tol``.
    """

    with_scale: bool = True
    max_iter: int = 100
    tol: float = 1e-6
    max_corr_mm: float | None = None
    workers: int = 2
    n_starts: int = 3
    start_angle_deg: float = 10.0
    refine_iter: int = 30

    def __post_init__(self) -> None:
        if not 1 <= int(self.n_starts) <= 7:
            raise ValueError(f"n_starts must be in 1..7, got {self.n_starts}")
        if self.refine_iter < 0 or self.max_iter < 0:
            raise ValueError("max_iter and refine_iter must be >= 0")
        self.n_starts = int(self.n_starts)


@dataclass
class FitResult:
    """Per-pair output: distances (P,) of the kept scan points (mm), the final similarity,
    iterations run, and the kept scan-point mask over the input scan."""

    distances: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    iterations: int
    kept: np.ndarray
    extra: dict = field(default_factory=dict)


def umeyama_np(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None, with_scale: bool = True
               ) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted similarity ``dst ~ s R src + t`` (Umeyama 1991), proper rotation, float64 NumPy
    in and out (:func:`benchmark3dface.geometry.mesh.umeyama`); the identity for zero weight."""
    w = np.ones(len(src)) if w is None else np.asarray(w, dtype=np.float64)
    if w.sum() <= 0:
        return 1.0, np.eye(3), np.zeros(3)
    s, rot, t = _umeyama(*(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (src, dst)),
                         with_scale, torch.from_numpy(w))
    return float(s), rot.numpy(), t.numpy()


def vertex_normals_np(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Normalised sum of the adjacent unit face normals (Deng's rule), float64 NumPy
    (:func:`benchmark3dface.geometry.mesh.vertex_normals`)."""
    return _vertex_normals(torch.from_numpy(np.asarray(v, dtype=np.float64)),
                           torch.from_numpy(np.asarray(f, dtype=np.int64))).numpy()


def closest_on_triangles_np(x: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points of triangles (a, b, c) to x (all (P, 3)), float64: barycentric
    coordinates of the plane projection, clamped through the Voronoi regions (Ericson,
    Real-Time Collision Detection 5.1.5)."""
    ab, ac, ap = b - a, c - a, x - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = x - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = x - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    out = np.empty_like(x)
    done = np.zeros(len(x), bool)

    def put(mask: np.ndarray, value: np.ndarray) -> None:
        m = mask & ~done
        out[m] = value[m]
        done[m] = True

    put((d1 <= 0) & (d2 <= 0), a)
    put((d3 >= 0) & (d4 <= d3), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        put((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + (d1 / (d1 - d3))[:, None] * ab)
        put((d6 >= 0) & (d5 <= d6), c)
        put((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + (d2 / (d2 - d6))[:, None] * ac)
        put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0),
            b + ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None] * (c - b))
        den = va + vb + vc
        v = vb / den
        w = vc / den
        put(np.ones(len(x), bool), a + v[:, None] * ab + w[:, None] * ac)
    return out


class _VertexQuery:
    def __init__(self, verts: np.ndarray, workers: int) -> None:
        self.v = verts
        self.tree = cKDTree(verts)
        self.workers = workers

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d, j = self.tree.query(x, workers=self.workers)
        return d, self.v[j], j


class _SurfaceQuery:
    """Closest point on a triangle mesh: open3d's BVH picks the triangle (float32); the point
    is recomputed on that triangle in float64."""

    def __init__(self, verts: np.ndarray, tris: np.ndarray, workers: int) -> None:
        import open3d as o3d

        self.o3d = o3d
        self.v, self.f = verts, tris
        self.scene = o3d.t.geometry.RaycastingScene()
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(verts.astype(np.float32))
        mesh.triangle.indices = o3d.core.Tensor(tris.astype(np.int32))
        self.scene.add_triangles(mesh)
        self.workers = workers

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        res = self.scene.compute_closest_points(self.o3d.core.Tensor(x.astype(np.float32)), nthreads=self.workers)
        fid = res["primitive_ids"].numpy().astype(np.int64)
        tri = self.f[fid]
        p = closest_on_triangles_np(x, self.v[tri[:, 0]], self.v[tri[:, 1]], self.v[tri[:, 2]])
        return np.linalg.norm(x - p, axis=1), p, fid


def icp_similarity_np(query, scan: np.ndarray, init: tuple[float, np.ndarray, np.ndarray], opts: FitOptions
                      ) -> tuple[float, np.ndarray, np.ndarray, int]:
    """ICP of a fixed prediction (behind ``query``, its frame) onto scan points (scan frame).

    Each iteration: scan points mapped into the prediction frame by the inverse similarity,
    closest prediction points found there, then a (weighted) Umeyama fit prediction -> scan.
    Stops after ``max_iter`` or when the RMS residual changes by less than ``tol``.
    """
    s, rot, t = init
    prev = np.inf
    it = 0
    for it in range(1, opts.max_iter + 1):
        x = (scan - t) @ rot / s
        d, p, _ = query(x)
        w = np.ones(len(scan)) if opts.max_corr_mm is None else (d * s <= opts.max_corr_mm).astype(np.float64)
        s, rot, t = umeyama_np(p, scan, w, opts.with_scale)
        r = s * p @ rot.T + t - scan
        resid = float(np.sqrt((w * (r ** 2).sum(1)).sum() / max(w.sum(), 1e-300)))
        if abs(prev - resid) < opts.tol:
            break
        prev = resid
    return s, rot, t, (it if opts.max_iter > 0 else 0)


def axis_rotation(axis: int, angle_rad: float) -> np.ndarray:
    """Rotation (3, 3) by ``angle_rad`` about coordinate axis ``axis`` (0 = x, 1 = y, 2 = z),
    right-handed."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def start_rotations(n_starts: int, angle_deg: float) -> list[np.ndarray]:
    """The model-frame turns of the ICP starts: identity, then +-angle about y (yaw), x
    (pitch), z (roll), in that order, ``n_starts`` of them."""
    a = math.radians(angle_deg)
    turns = [np.eye(3)] + [axis_rotation(ax, sg * a) for ax in (1, 0, 2) for sg in (1.0, -1.0)]
    return turns[:n_starts]


def turned_start(start: tuple[float, np.ndarray, np.ndarray], turn: np.ndarray, centre: np.ndarray
                 ) -> tuple[float, np.ndarray, np.ndarray]:
    """``start`` followed by ``turn`` (a rotation in the prediction's frame) about the scan-frame
    point ``centre``: the scan-frame rotation is ``Q = R turn R^T``, ``y -> Q (y - c) + c``."""
    s, rot, t = start
    q = rot @ turn @ rot.T
    return s, q @ rot, q @ (t - centre) + centre


#: refinement updates in a row without a new best (by > tol) before it stops
REFINE_PATIENCE = 3


def rodrigues_np(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``w`` (radians)."""
    th = float(np.linalg.norm(w))
    if th < 1e-300:
        return np.eye(3)
    k = w / th
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(th) * kx + (1 - math.cos(th)) * (kx @ kx)


def plane_residuals_np(query, normals: np.ndarray, scan: np.ndarray, sim: tuple[float, np.ndarray, np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed point-to-plane residuals (mm, scan frame) of scan points against the aligned
    prediction: ``s ((x - v) . n_v)`` with x the point in the prediction frame, v its closest
    vertex, n_v that vertex's normal. Returns (residuals (P,), v (P, 3), n_v (P, 3)), v and n_v
    in the prediction frame."""
    s, rot, t = sim
    x = (scan - t) @ rot / s
    _, v, j = query(x)
    n = normals[j]
    return s * ((x - v) * n).sum(1), v, n


def refine_point_to_plane_np(query, normals: np.ndarray, scan: np.ndarray,
                             start: tuple[float, np.ndarray, np.ndarray], opts: FitOptions
                             ) -> tuple[float, tuple[float, np.ndarray, np.ndarray], int]:
    """Gauss-Newton on the MICC residual itself: minimise sum_i ((s R v_i + t - y_i) . R n_i)^2
    over (s, R, t), the closest vertices v_i searched again at every iteration.

    Linearised about the current similarity (scale ``s (1 + ds)``, rotation ``exp([w]) R``,
    translation ``t + dt``): d r_i / dw = (y_i - t) x m_i, d r_i / d ds = (P_i - t) . m_i,
    d r_i / d dt = m_i (P_i = s R v_i + t, m_i = R n_i). Normal equations with a 1e-12 relative
    ridge. Stops after ``opts.refine_iter`` updates, when the RMSE changes by < ``opts.tol``, or
    when ``REFINE_PATIENCE`` updates in a row did not lower the best RMSE by ``opts.tol`` (the
    closest vertices switching back and forth). Returns (lowest RMSE seen, its similarity,
    updates made); the start itself is a candidate."""
    s, rot, t = start
    best: tuple[float, tuple[float, np.ndarray, np.ndarray]] = (math.inf, start)
    prev = math.inf
    it = stall = 0
    while True:
        r, v, n = plane_residuals_np(query, normals, scan, (s, rot, t))
        rmse = float(np.sqrt((r * r).mean()))
        stall = 0 if rmse < best[0] - opts.tol else stall + 1
        if rmse < best[0]:
            best = (rmse, (s, rot, t))
        if it >= opts.refine_iter or abs(prev - rmse) < opts.tol or stall >= REFINE_PATIENCE:
            break
        prev = rmse
        it += 1
        m = n @ rot.T
        q = s * v @ rot.T
        cols = [np.cross(scan - t, m)] + ([(q * m).sum(1)[:, None]] if opts.with_scale else []) + [m]
        jac = np.concatenate(cols, 1)
        a = jac.T @ jac
        tr = float(np.trace(a))
        if not math.isfinite(tr) or tr <= 0:  # nothing to fit (degenerate crop)
            break
        a += 1e-12 * tr * np.eye(len(a))
        try:
            dx = np.linalg.solve(a, jac.T @ r)  # r = -(P - y) . m: the step that cancels it
        except np.linalg.LinAlgError:
            break
        if not np.isfinite(dx).all():
            break
        ds = dx[3] if opts.with_scale else 0.0
        rot = rodrigues_np(dx[:3]) @ rot
        s = s * (1.0 + ds)
        t = t + dx[-3:]
    return best[0], best[1], it


def _init_transform(pred_lm: np.ndarray | None, scan_lm: np.ndarray | None, with_scale: bool,
                    pred_anchor: np.ndarray | None, scan_anchor: np.ndarray | None,
                    pred_v: np.ndarray, scan: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Landmark similarity when both landmark sets exist (finite rows, >= 3), else translation
    of an anchor (nose tip) onto the scan's, else centroid onto centroid."""
    if pred_lm is not None and scan_lm is not None:
        ok = np.isfinite(pred_lm).all(1) & np.isfinite(scan_lm).all(1)
        if ok.sum() >= 3:
            return umeyama_np(pred_lm[ok], scan_lm[ok], None, with_scale)
    if pred_anchor is not None and scan_anchor is not None:
        return 1.0, np.eye(3), scan_anchor - pred_anchor
    return 1.0, np.eye(3), scan.mean(0) - pred_v.mean(0)


def best_start_np(query, scan: np.ndarray, start: tuple[float, np.ndarray, np.ndarray], opts: FitOptions,
                  score) -> tuple[float, tuple[float, np.ndarray, np.ndarray], int, int, list[float]]:
    """ICP from each of ``opts.n_starts`` starts (``start_rotations`` about the centroid of the
    scan points); ``score(sim)`` is the protocol's residual of a result. Returns (best score,
    best similarity, its start index, its ICP iterations, every start's score). The first
    start wins ties."""
    centre = scan.mean(0)
    best = None
    scores = []
    for k, turn in enumerate(start_rotations(opts.n_starts, opts.start_angle_deg)):
        s, rot, t, it = icp_similarity_np(query, scan, turned_start(start, turn, centre), opts)
        sc = float(score((s, rot, t)))
        scores.append(sc)
        if best is None or sc < best[0]:
            best = (sc, (s, rot, t), k, it)
    assert best is not None
    return (*best, scores)


def micc_reference(pred_v: np.ndarray, pred_f: np.ndarray, scan: np.ndarray, nose_tip: np.ndarray,
                   radius: float = 95.0, forehead_cut: float | None = None, up=(0.0, 1.0, 0.0),
                   pred_lm: np.ndarray | None = None, scan_lm: np.ndarray | None = None,
                   pred_nose: np.ndarray | None = None, opts: FitOptions | None = None, init: str = "auto"
                   ) -> FitResult:
    """MICC / Deng protocol for one pair: crop the scan to ``radius`` mm around the nose tip
    (and drop points higher than ``forehead_cut`` mm above it along ``up``), ICP with isotropic
    scale from ``opts.n_starts`` starts, the best start (lowest point-to-plane RMSE) refined on
    the point-to-plane residual (see the module docstring), point-to-plane distance
    |(x - v) . n_v| from every kept scan point to its closest predicted vertex v (n_v the vertex
    normal), in scan millimetres. ``extra``: ``start`` (index of the winning start),
    ``start_rmse`` (each start's RMSE after ICP), ``refine_iterations``, ``icp_rmse``."""
    opts = opts or FitOptions()
    pred_v = np.asarray(pred_v, np.float64)
    scan = np.asarray(scan, np.float64)
    nose_tip = np.asarray(nose_tip, np.float64)
    keep = np.linalg.norm(scan - nose_tip, axis=1) <= radius
    if forehead_cut is not None:
        keep &= (scan - nose_tip) @ np.asarray(up, np.float64) <= forehead_cut
    pts = scan[keep]
    if len(pts) == 0:
        return FitResult(np.zeros(0), 1.0, np.eye(3), np.zeros(3), 0, keep)
    start = _init_transform(pred_lm, scan_lm, opts.with_scale, pred_nose, nose_tip, pred_v, pts) \
        if init == "auto" else (1.0, np.eye(3), np.zeros(3))
    q = _VertexQuery(pred_v, opts.workers)
    normals = vertex_normals_np(pred_v, np.asarray(pred_f, np.int64))
    extra: dict = {}
    if opts.max_iter > 0:
        def score(sim):
            r = plane_residuals_np(q, normals, pts, sim)[0]
            return np.sqrt((r * r).mean())

        icp_rmse, sim, k, it, scores = best_start_np(q, pts, start, opts, score)
        _, sim, n_ref = refine_point_to_plane_np(q, normals, pts, sim, opts)
        extra = {"start": k, "start_rmse": scores, "icp_rmse": icp_rmse, "refine_iterations": n_ref}
    else:
        sim, it = start, 0
    dist = np.abs(plane_residuals_np(q, normals, pts, sim)[0])
    return FitResult(dist, sim[0], sim[1], sim[2], it, keep, extra)


def now_start(pred_lm7: np.ndarray, scan_lm7: np.ndarray, with_scale: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """NoW's initial alignment, in the official code's order: a similarity Procrustes of the
    prediction's 7 landmarks onto the scan's (scale always estimated). The scaled variant
    applies it whole; the metrical one (``with_scale=False``, the official
    ``scan2mesh_computations_metrical``) applies its rotation and translation with the scale
    replaced by the unit factor, 1 for millimetres."""
    s, rot, t = umeyama_np(np.asarray(pred_lm7, np.float64), np.asarray(scan_lm7, np.float64), None, True)
    return (s if with_scale else 1.0), rot, t


def now_reference(pred_v: np.ndarray, pred_f: np.ndarray, scan: np.ndarray, scan_lm7: np.ndarray,
                  pred_lm7: np.ndarray, opts: FitOptions | None = None, radius_factor: float = 1.4,
                  centre_factor: float = 0.3, init: str = "auto") -> FitResult:
    """NoW protocol for one pair: crop the scan to NoW's sphere (see ``geometry.now_crop_sphere``),
    Procrustes on the 7 landmarks (``now_start``), ICP refinement of scale/rotation/translation
    (rotation/translation only when ``opts.with_scale`` is False) against the closest points on
    the predicted surface from ``opts.n_starts`` starts (the one with the lowest RMS
    scan-to-mesh distance wins), unsigned scan-to-surface distances.
    ``init="none"``: skip the Procrustes (the prediction is already in the scan frame).
    ``extra``: ``start``, ``start_rms`` (each start's RMS distance after ICP)."""
    opts = opts or FitOptions()
    pred_v = np.asarray(pred_v, np.float64)
    scan = np.asarray(scan, np.float64)
    lm = np.asarray(scan_lm7, np.float64)
    bridge = 0.5 * (lm[1] + lm[2])
    centre = lm[4] + centre_factor * (bridge - lm[4])
    rad = radius_factor * (np.linalg.norm(lm[0] - lm[3]) + np.linalg.norm(bridge - lm[4])) / 2
    keep = np.linalg.norm(scan - centre, axis=1) <= rad
    pts = scan[keep]
    if len(pts) == 0:
        return FitResult(np.zeros(0), 1.0, np.eye(3), np.zeros(3), 0, keep)
    start = now_start(pred_lm7, lm, opts.with_scale) if init == "auto" else (1.0, np.eye(3), np.zeros(3))
    q = _SurfaceQuery(pred_v, np.asarray(pred_f, np.int64), opts.workers)
    extra: dict = {}
    if opts.max_iter > 0:
        def score(sim):
            s_, r_, t_ = sim
            d_ = s_ * q((pts - t_) @ r_ / s_)[0]
            return np.sqrt((d_ * d_).mean())

        _, sim, k, it, scores = best_start_np(q, pts, start, opts, score)
        extra = {"start": k, "start_rms": scores}
    else:
        sim, it = start, 0
    s, rot, t = sim
    d, _, _ = q((pts - t) @ rot / s)
    return FitResult(s * d, s, rot, t, it, keep, extra)
