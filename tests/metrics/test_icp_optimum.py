"""The scan protocols' alignment finds the optimum: on random pairs (smooth deformations of a
face mesh under random similarity transforms) MICC and NoW are never worse than an independent
open3d pipeline by more than 1 %, and the best of several ICP starts is what is reported.

The independent pipelines below use only open3d and a few lines of numpy / scipy (nothing from
``benchmark3dface.metrics``): the initial similarity from the landmarks by open3d's own
``TransformationEstimationPointToPoint(with_scaling=True)``, open3d's ``registration_icp``
(point-to-point with scaling, prediction -> scan, several correspondence distances, the best
kept), then the protocol's distance computed directly: MICC point-to-plane RMSE to the closest
vertex (vertex normal = normalised sum of adjacent unit face normals, 95 mm crop around the
nose tip), NoW unsigned point-to-surface distance (open3d ``RaycastingScene``) in NoW's crop
sphere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

o3d = pytest.importorskip("open3d")
reg = o3d.pipelines.registration

from scipy.spatial import cKDTree  # noqa: E402

from benchmark3dface.data.sample import Sample  # noqa: E402
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction  # noqa: E402
from benchmark3dface.metrics import MICCRMSE, NoWScanToMesh  # noqa: E402
from benchmark3dface.metrics.reference import FitOptions, micc_reference, now_reference  # noqa: E402

NOW7 = [36, 39, 42, 45, 33, 48, 54]  # iBUG indices of NoW's 7 points (written out: independent)
N_PAIRS = 20
CORR_MM = (2.0, 5.0, 10.0)  # open3d max correspondence distances tried; the best result is kept


@pytest.fixture(scope="module")
def face():
    """The procedural model's mean face decimated by open3d to ~650 vertices (mm), its
    triangles and its 68 landmark vertices (the nearest decimated vertex of each)."""
    from benchmark3dface.facemodel import load_facemodel

    m = load_facemodel("procedural")
    full_v = m.mean_shape.double().numpy().reshape(-1, 3)
    full_f = m.triangles.numpy()
    lm_full = full_v[m.landmarks68.numpy()]
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(full_v), o3d.utility.Vector3iVector(full_f))
    small = mesh.simplify_quadric_decimation(1200)
    v, f = np.asarray(small.vertices), np.asarray(small.triangles)
    lm = cKDTree(v).query(lm_full)[1]
    return {"full_v": full_v, "full_f": full_f, "lm_full": lm_full, "v": v, "f": f, "lm": lm}


def _rotation(rng, max_deg):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = math.radians(rng.uniform(0, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(ang) * k + (1 - math.cos(ang)) * k @ k


def _unit_normals(v, f):
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _pair(face, seed):
    """GT scan (1000 area-uniform samples of the full-resolution mean face + 0.2 mm noise, random
    rigid transform) and a prediction (decimated mean face + a smooth random bump field of a few
    mm along its normals, then a random similarity: any rotation, scale 0.8-1.25)."""
    rng = np.random.default_rng(seed)
    v, f = face["full_v"], face["full_f"]
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    tri = rng.choice(len(f), 1000, p=area / area.sum())
    r1, r2 = rng.random(1000), rng.random(1000)
    w = np.stack([1 - np.sqrt(r1), np.sqrt(r1) * (1 - r2), np.sqrt(r1) * r2], 1)
    scan = (w[:, :, None] * v[f[tri]]).sum(1) + 0.2 * rng.normal(size=(1000, 3))
    rot, shift = _rotation(rng, 30), rng.uniform(-50, 50, 3)
    scan = scan @ rot.T + shift
    scan_lm = face["lm_full"] @ rot.T + shift
    pv = face["v"].copy()
    centres = pv[rng.choice(len(pv), 6)]
    bumps = (rng.normal(0, 2.0, 6) * np.exp(-((pv[:, None] - centres[None]) ** 2).sum(-1)
                                            / rng.uniform(20, 50, 6) ** 2)).sum(1)
    pv = pv + bumps[:, None] * _unit_normals(pv, face["f"])
    s, rot2, t2 = rng.uniform(0.8, 1.25), _rotation(rng, 180), rng.uniform(-100, 100, 3)
    pv = s * pv @ rot2.T + t2
    return {"pv": pv, "pf": face["f"], "plm": pv[face["lm"]], "scan": scan, "slm": scan_lm}


@pytest.fixture(scope="module")
def pairs(face):
    return [_pair(face, seed) for seed in range(N_PAIRS)]


def _o3d_similarity(src_pts, dst_pts):
    """4x4 similarity src -> dst by open3d's closed form on known correspondences."""
    est = reg.TransformationEstimationPointToPoint(with_scaling=True)
    src = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(src_pts))
    dst = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(dst_pts))
    corr = o3d.utility.Vector2iVector(np.stack([np.arange(len(src_pts))] * 2, 1))
    return est.compute_transformation(src, dst, corr)


def _o3d_icp(pv, target, init, max_corr, with_scaling=True):
    src = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pv))
    tgt = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(target))
    res = reg.registration_icp(src, tgt, max_corr, init, reg.TransformationEstimationPointToPoint(with_scaling),
                               reg.ICPConvergenceCriteria(1e-10, 1e-10, 200))
    t = res.transformation
    return pv @ t[:3, :3].T + t[:3, 3]


def _o3d_micc(p):
    """Independent MICC: crop 95 mm around the scan's nose tip (iBUG 30), landmark similarity,
    scaled point-to-point ICP, point-to-plane RMSE to the closest vertex. Best over CORR_MM."""
    crop = p["scan"][np.linalg.norm(p["scan"] - p["slm"][30], axis=1) <= 95.0]
    init = _o3d_similarity(p["plm"][NOW7], p["slm"][NOW7])
    best = math.inf
    for mc in CORR_MM:
        av = _o3d_icp(p["pv"], crop, init, mc)
        n = _unit_normals(av, p["pf"])
        _, j = cKDTree(av).query(crop)
        d = ((crop - av[j]) * n[j]).sum(1)
        best = min(best, math.sqrt((d ** 2).mean()))
    return best


def _o3d_now(p):
    """Independent NoW: crop sphere from the 7 scan landmarks, landmark similarity, scaled
    point-to-point ICP, RMS of the unsigned scan-to-mesh distances (open3d raycasting): the
    objective NoW's alignment minimises (the official code least-squares the scan-to-mesh
    residuals). Best over CORR_MM."""
    lm = p["slm"][NOW7]
    bridge = (lm[1] + lm[2]) / 2
    centre = lm[4] + 0.3 * (bridge - lm[4])
    radius = 1.4 * (np.linalg.norm(lm[0] - lm[3]) + np.linalg.norm(bridge - lm[4])) / 2
    crop = p["scan"][np.linalg.norm(p["scan"] - centre, axis=1) <= radius]
    init = _o3d_similarity(p["plm"][NOW7], lm)
    best = math.inf
    for mc in CORR_MM:
        av = _o3d_icp(p["pv"], crop, init, mc)
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(av.astype(np.float32))
        mesh.triangle.indices = o3d.core.Tensor(p["pf"].astype(np.int32))
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(mesh)
        d = scene.compute_distance(o3d.core.Tensor(crop.astype(np.float32))).numpy().astype(np.float64)
        best = min(best, math.sqrt((d ** 2).mean()))
    return best


def _batch(pairs, scan_landmarks=True):
    recs, samples = [], []
    for i, p in enumerate(pairs):
        sid = f"p{i:02d}"
        lm68 = torch.from_numpy(p["plm"])
        recs.append(Reconstruction(sid, [FaceReconstruction(torch.from_numpy(p["pv"]), torch.from_numpy(p["pf"]),
                                                            landmarks3d=lm68)]))
        samples.append(Sample(sample_id=sid, scan_vertices=torch.from_numpy(p["scan"]),
                              scan_landmarks7=torch.from_numpy(p["slm"][NOW7]) if scan_landmarks else None,
                              meta={"scan_nose_tip": torch.from_numpy(p["slm"][30])}))
    return recs, samples


def test_micc_never_worse_than_independent_open3d(pairs):
    """>= 20 pairs: the project's MICC RMSE (torch path, default options) <= 1.01 x the best of
    the independent open3d pipelines, pair by pair."""
    recs, samples = _batch(pairs)
    m = MICCRMSE()
    m.update(recs, samples)
    ours = m.compute().per_sample["rmse"]
    ratios = [ours[f"p{i:02d}"] / _o3d_micc(p) for i, p in enumerate(pairs)]
    assert len(ratios) >= 20
    assert max(ratios) <= 1.01, np.round(ratios, 4)


def test_micc_reference_path_is_never_worse_either(pairs):
    """The open3d/scipy reference path, on a few of the pairs: the same guarantee."""
    for p in pairs[:4]:
        r = micc_reference(p["pv"], p["pf"], p["scan"], p["slm"][30], pred_lm=p["plm"][NOW7],
                           scan_lm=p["slm"][NOW7], opts=FitOptions())
        assert math.sqrt((r.distances ** 2).mean()) <= 1.01 * _o3d_micc(p)


def test_now_never_worse_than_independent_open3d(pairs):
    """>= 20 pairs: the project's NoW RMS scan-to-mesh distance (torch path; from the per-sample
    mean and population std) <= 1.01 x the best of the independent open3d pipelines. (The
    reported *mean* distance can sit a few % above that of a trimmed, robust alignment: NoW
    minimises squared distances, as the official code does.)"""
    recs, samples = _batch(pairs)
    m = NoWScanToMesh()
    m.update(recs, samples)
    res = m.compute().per_sample
    ours = {k: math.hypot(v, res["std"][k]) for k, v in res["mean"].items()}
    ratios = [ours[f"p{i:02d}"] / _o3d_now(p) for i, p in enumerate(pairs)]
    assert len(ratios) >= 20
    assert max(ratios) <= 1.01, np.round(ratios, 4)


def test_best_start_is_the_lowest_residual_and_never_worse_than_one_start(pairs):
    """With several starts the reported value is the lowest start's (then refined for MICC), so
    it is never above the single-start value; the winning start is the argmin of the residuals."""
    for p in pairs[:2]:
        one = micc_reference(p["pv"], p["pf"], p["scan"], p["slm"][30], opts=FitOptions(n_starts=1, refine_iter=0))
        many = micc_reference(p["pv"], p["pf"], p["scan"], p["slm"][30], opts=FitOptions(n_starts=4, refine_iter=0))
        rmse = lambda r: math.sqrt((r.distances ** 2).mean())  # noqa: E731
        assert len(many.extra["start_rmse"]) == 4
        assert many.extra["start"] == int(np.argmin(many.extra["start_rmse"]))
        assert rmse(many) == pytest.approx(min(many.extra["start_rmse"]), abs=1e-9)
        assert rmse(many) <= rmse(one) + 1e-9
        refined = micc_reference(p["pv"], p["pf"], p["scan"], p["slm"][30], opts=FitOptions(n_starts=4))
        assert rmse(refined) <= rmse(many) + 1e-9
        nw = now_reference(p["pv"], p["pf"], p["scan"], p["slm"][NOW7], p["plm"][NOW7],
                           opts=FitOptions(n_starts=2, max_iter=30))
        assert nw.extra["start"] == int(np.argmin(nw.extra["start_rms"]))
        assert math.sqrt((nw.distances ** 2).mean()) == pytest.approx(min(nw.extra["start_rms"]), abs=1e-6)


def test_micc_without_scan_landmarks_starts_from_the_nose_tip(pairs):
    """Real MICC scans carry no landmarks: the nose-tip start (translation only) plus the extra
    starts still reach the open3d optimum within 1 % on pairs whose prediction is only turned
    a little (a nose-tip start cannot undo an arbitrary rotation, and neither can open3d's ICP
    from it)."""
    rng = np.random.default_rng(0)
    near = []
    for p in pairs[:6]:
        q = dict(p)
        # a prediction in a frame turned <= 15 degrees from the scan's, same scale
        rot = _rotation(rng, 15)
        base = p["pv"] - p["plm"][30]
        sim = _o3d_similarity(p["plm"][NOW7], p["slm"][NOW7])
        q["pv"] = (base @ sim[:3, :3].T / np.cbrt(np.linalg.det(sim[:3, :3]))) @ rot.T
        q["plm"] = q["pv"][np.asarray([np.argmin(np.linalg.norm(p["pv"] - x, axis=1)) for x in p["plm"]])]
        near.append(q)
    recs, samples = _batch(near, scan_landmarks=False)
    m = MICCRMSE()
    m.update(recs, samples)
    ours = m.compute().per_sample["rmse"]
    for i, q in enumerate(near):
        crop = q["scan"][np.linalg.norm(q["scan"] - q["slm"][30], axis=1) <= 95.0]
        init = np.eye(4)
        init[:3, 3] = q["slm"][30] - q["plm"][30]
        best = math.inf
        for mc in CORR_MM:
            av = _o3d_icp(q["pv"], crop, init, mc)
            n = _unit_normals(av, q["pf"])
            _, j = cKDTree(av).query(crop)
            best = min(best, math.sqrt((((crop - av[j]) * n[j]).sum(1) ** 2).mean()))
        assert ours[f"p{i:02d}"] <= 1.01 * best
