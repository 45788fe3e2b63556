"""Reference implementations of the scan protocols, one pair at a time, on numpy / scipy /
open3d. They define the protocols' numbers; the batched torch path (``scanfit``) must agree
with them (tests check 1e-3 mm on random pairs).

Units: millimetres. Similarities ``(s, R, t)`` map prediction -> scan: ``y = s R x + t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree


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
    """

    with_scale: bool = True
    max_iter: int = 100
    tol: float = 1e-6
    max_corr_mm: float | None = None
    workers: int = 2


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
    """Weighted similarity ``dst ~ s R src + t`` (Umeyama 1991), proper rotation."""
    w = np.ones(len(src)) if w is None else np.asarray(w, dtype=np.float64)
    ws = w.sum()
    if ws <= 0:
        return 1.0, np.eye(3), np.zeros(3)
    mu_s = (w[:, None] * src).sum(0) / ws
    mu_d = (w[:, None] * dst).sum(0) / ws
    xs, xd = src - mu_s, dst - mu_d
    cov = (w[:, None] * xd).T @ xs / ws
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.array([1.0, 1.0, d])
    rot = u @ np.diag(fix) @ vt
    s = float((sig * fix).sum() / ((w * (xs ** 2).sum(1)).sum() / ws)) if with_scale else 1.0
    return s, rot, mu_d - s * rot @ mu_s


def vertex_normals_np(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Normalised sum of the adjacent unit face normals (Deng's rule)."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-300)
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, f[:, k], fn)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-300)


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


def micc_reference(pred_v: np.ndarray, pred_f: np.ndarray, scan: np.ndarray, nose_tip: np.ndarray,
                   radius: float = 95.0, forehead_cut: float | None = None, up=(0.0, 1.0, 0.0),
                   pred_lm: np.ndarray | None = None, scan_lm: np.ndarray | None = None,
                   pred_nose: np.ndarray | None = None, opts: FitOptions | None = None, init: str = "auto"
                   ) -> FitResult:
    """MICC / Deng protocol for one pair: crop the scan to ``radius`` mm around the nose tip
    (and drop points higher than ``forehead_cut`` mm above it along ``up``), ICP with isotropic
    scale, point-to-plane distance |(x - v) . n_v| from every kept scan point to its closest
    predicted vertex v (n_v the vertex normal), in scan millimetres."""
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
    s, rot, t, it = icp_similarity_np(q, pts, start, opts) if opts.max_iter > 0 else (*start, 0)
    x = (pts - t) @ rot / s
    _, v, j = q(x)
    n = vertex_normals_np(pred_v, np.asarray(pred_f, np.int64))[j]
    dist = s * np.abs(((x - v) * n).sum(1))
    return FitResult(dist, s, rot, t, it, keep)


def now_reference(pred_v: np.ndarray, pred_f: np.ndarray, scan: np.ndarray, scan_lm7: np.ndarray,
                  pred_lm7: np.ndarray, opts: FitOptions | None = None, radius_factor: float = 1.4,
                  centre_factor: float = 0.3, init: str = "auto") -> FitResult:
    """NoW protocol for one pair: crop the scan to NoW's sphere (see ``geometry.now_crop_sphere``),
    similarity Procrustes on the 7 landmarks, ICP refinement of scale/rotation/translation
    against the closest points on the predicted surface, unsigned scan-to-surface distances.
    ``init="none"``: skip the Procrustes (the prediction is already in the scan frame)."""
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
    start = umeyama_np(np.asarray(pred_lm7, np.float64), lm, None, opts.with_scale) if init == "auto" \
        else (1.0, np.eye(3), np.zeros(3))
    q = _SurfaceQuery(pred_v, np.asarray(pred_f, np.int64), opts.workers)
    s, rot, t, it = icp_similarity_np(q, pts, start, opts) if opts.max_iter > 0 else (*start, 0)
    d, _, _ = q((pts - t) @ rot / s)
    return FitResult(s * d, s, rot, t, it, keep)
