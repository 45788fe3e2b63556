"""MICC and NoW protocols: torch path vs reference, known answers, failures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import MICCRMSE, NOW7_FROM_IBUG68, NoWMetrical, NoWScanToMesh
from benchmark3dface.metrics.geometry import IBUG68_NOSE_TIP, vertex_normals
from benchmark3dface.metrics.reference import FitOptions, micc_reference, now_reference
from benchmark3dface.metrics.scanfit import micc_fit_torch, now_fit_torch
from benchmark3dface.metrics.synthetic import face_surface, make_pair, random_similarity, sample_surface

L7 = list(NOW7_FROM_IBUG68)


@pytest.fixture(scope="module")
def small_pairs():
    """100 random small pairs (a few hundred vertices and scan points each)."""
    return [make_pair(seed, n_grid=14, scan_points=250, error_mm=1.5, noise_mm=0.3, max_angle_deg=15)
            for seed in range(100)]


def _lm7(p):
    return p.pred_vertices[p.pred_landmark_indices[L7]]


@pytest.mark.parametrize("search", ["kdtree", "grid"])
def test_micc_torch_matches_reference_on_100_pairs(small_pairs, search):
    opts = FitOptions(max_iter=12, n_starts=2)  # two starts: the multi-start and refinement paths too
    fit = micc_fit_torch([p.pred_vertices for p in small_pairs], [p.pred_triangles for p in small_pairs],
                         [p.scan for p in small_pairs], [p.scan_nose_tip for p in small_pairs],
                         pred_lm=[_lm7(p) for p in small_pairs], scan_lm=[p.scan_landmarks7 for p in small_pairs],
                         opts=opts, search=search)
    assert ("searched" in fit.stats) == (search == "kdtree")  # the requested search ran
    worst = 0.0
    for p, d, it in zip(small_pairs, fit.distances, fit.iterations):
        r = micc_reference(p.pred_vertices.numpy(), p.pred_triangles.numpy(), p.scan.numpy(), p.scan_nose_tip.numpy(),
                           pred_lm=_lm7(p).numpy(), scan_lm=p.scan_landmarks7.numpy(), opts=opts)
        rmse_t = float(d.pow(2).mean().sqrt())
        rmse_r = float(np.sqrt((r.distances ** 2).mean()))
        worst = max(worst, abs(rmse_t - rmse_r))
        assert len(d) == len(r.distances) and int(it) == r.iterations
    assert worst < 1e-3


@pytest.mark.parametrize("search", ["numba", "grid"])
def test_now_torch_matches_reference_on_100_pairs(small_pairs, search):
    opts = FitOptions(max_iter=12, n_starts=2)  # two starts: the multi-start and refinement paths too
    fit = now_fit_torch([p.pred_vertices for p in small_pairs], [p.pred_triangles for p in small_pairs],
                        [p.scan for p in small_pairs], [p.scan_landmarks7 for p in small_pairs],
                        [_lm7(p) for p in small_pairs], opts=opts, search=search)
    assert ("build_evaluated" in fit.stats) == (search == "numba")  # the requested search ran
    worst = 0.0
    for p, d in zip(small_pairs, fit.distances):
        r = now_reference(p.pred_vertices.numpy(), p.pred_triangles.numpy(), p.scan.numpy(),
                          p.scan_landmarks7.numpy(), _lm7(p).numpy(), opts=opts)
        assert len(d) == len(r.distances)
        worst = max(worst, abs(float(torch.quantile(d, 0.5)) - float(np.median(r.distances))),
                    abs(float(d.mean()) - float(r.distances.mean())))
    assert worst < 1e-3


# --- known answers ---------------------------------------------------------------------------

def _offset_case(d_mm: float, seed: int = 0):
    """GT face, scan = its vertices, prediction = GT offset by d along the vertex normals."""
    gt = face_surface(40, seed=seed)
    n = vertex_normals(gt.vertices, gt.triangles)
    pred = gt.vertices + d_mm * n
    return gt, pred


def _sample(gt, scan=None, sid="s0"):
    scan = gt.vertices if scan is None else scan
    lm7 = gt.vertices[gt.landmark_indices[L7]]
    return Sample(sample_id=sid, scan_vertices=scan, scan_landmarks7=lm7,
                  meta={"scan_nose_tip": gt.vertices[gt.landmark_indices[IBUG68_NOSE_TIP]]})


def _rec(v, gt, sid="s0"):
    return Reconstruction(sid, [FaceReconstruction(v, gt.triangles, landmark_indices=gt.landmark_indices)])


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("d_mm", [0.5, 2.0])
def test_micc_offset_mesh_gives_rmse_d(backend, d_mm):
    """Known alignment (no ICP): a mesh offset by d along its normals is d mm away, point-to-plane."""
    gt, pred = _offset_case(d_mm)
    m = MICCRMSE(backend=backend, max_iter=0, initial_alignment="none", radius=60.0)
    m.update([_rec(pred, gt)], [_sample(gt)])
    assert m.compute().metrics["rmse"].value == pytest.approx(d_mm, rel=0.01)


def test_scan_metrics_search_option(small_pairs):
    """The metrics' ``search`` option reaches the torch path: both searches give the same
    per-sample values (MICC RMSE, NoW mean); an unknown value is refused."""
    pairs = small_pairs[:6]
    recs = [Reconstruction(f"p{i}", [FaceReconstruction(p.pred_vertices, p.pred_triangles,
                                                        landmark_indices=p.pred_landmark_indices)])
            for i, p in enumerate(pairs)]
    samples = [Sample(sample_id=f"p{i}", scan_vertices=p.scan, scan_landmarks7=p.scan_landmarks7,
                      meta={"scan_nose_tip": p.scan_nose_tip}) for i, p in enumerate(pairs)]
    for cls, key, searches, foreign in ((MICCRMSE, "rmse", ("kdtree", "grid"), "octree"),
                                        (NoWScanToMesh, "mean", ("numba", "grid"), "kdtree")):
        res = {}
        for search in searches:
            m = cls(search=search, max_iter=12)
            m.update(recs, samples)
            res[search] = m.compute().per_sample[key]
        one, two = (res[k] for k in searches)
        assert one.keys() == two.keys() and len(two) == len(pairs)
        assert max(abs(one[k] - two[k]) for k in two) < 1e-9
        with pytest.raises(ValueError, match="search must be"):
            cls(search=foreign)


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_micc_icp_undoes_a_random_similarity(backend):
    """Under any similarity of the prediction the ICP result is the same (it can only lower the
    error of a d-offset mesh below d, absorbing part of it in scale/translation), and GT scored
    against itself gives 0."""
    rng = np.random.default_rng(5)
    gt, pred = _offset_case(1.0)
    s, r, t = random_similarity(rng, max_angle_deg=180, scale_range=(0.5, 2.0), max_shift=200)
    m = MICCRMSE(backend=backend, radius=60.0, max_iter=200, tol=1e-9)
    m.update([_rec(pred, gt, "plain"), _rec(s * pred @ r.T + t, gt, "moved"),
              _rec(s * gt.vertices @ r.T + t, gt, "self")],
             [_sample(gt, sid="plain"), _sample(gt, sid="moved"), _sample(gt, sid="self")])
    res = m.compute().per_sample["rmse"]
    assert res["moved"] == pytest.approx(res["plain"], abs=1e-4)
    assert 0 < res["plain"] <= 1.0
    assert res["self"] < 1e-6


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_now_self_is_zero_and_metrical_sees_scale(backend):
    rng = np.random.default_rng(6)
    gt = face_surface(30, seed=1)
    scan = sample_surface(gt.vertices, gt.triangles, 2000, rng)
    s, r, t = random_similarity(rng, max_angle_deg=180, scale_range=(1.2, 1.3))
    moved = s * gt.vertices @ r.T + t
    rigid = gt.vertices @ r.T + t
    recs = [_rec(moved, gt, "scaled"), _rec(rigid, gt, "rigid")]
    samples = [_sample(gt, scan, "scaled"), _sample(gt, scan, "rigid")]
    now = NoWScanToMesh(backend=backend, n_starts=1)
    now.update(recs, samples)
    res = now.compute()
    assert res.per_sample["mean"]["scaled"] < 1e-6 and res.per_sample["mean"]["rigid"] < 1e-6
    assert res.metrics["median"].value < 0.01  # one 0.01 mm histogram bin
    met = NoWMetrical(backend=backend, max_iter=20)
    met.update(recs, samples)
    res_m = met.compute()
    assert res_m.per_sample["mean"]["rigid"] < 1e-6
    assert res_m.per_sample["mean"]["scaled"] > 1.0  # a 20 % too large face is mm off


def test_now_dataset_statistics_pool_all_points():
    rng = np.random.default_rng(7)
    gts = [face_surface(24, seed=s) for s in range(3)]
    recs, samples = [], []
    for i, gt in enumerate(gts):
        scan = sample_surface(gt.vertices, gt.triangles, 800 + 300 * i, rng)
        pred = gt.vertices + (0.3 + 0.4 * i) * vertex_normals(gt.vertices, gt.triangles)
        recs.append(_rec(pred, gt, f"s{i}"))
        samples.append(_sample(gt, scan, f"s{i}"))
    m = NoWScanToMesh(max_iter=0, initial_alignment="none")
    m.update(recs, samples)
    res = m.compute()
    pooled = []
    fit = now_fit_torch([r.face.vertices for r in recs], [g.triangles for g in gts], [s.scan_vertices for s in samples],
                        [s.scan_landmarks7 for s in samples],
                        [r.face.vertices[g.landmark_indices[L7]] for r, g in zip(recs, gts)],
                        FitOptions(max_iter=0), init="none")
    pooled = torch.cat(fit.distances).numpy()
    assert res.metrics["mean"].value == pytest.approx(pooled.mean(), abs=1e-9)
    assert res.metrics["std"].value == pytest.approx(pooled.std(), abs=1e-9)
    assert res.metrics["median"].value == pytest.approx(np.median(pooled), abs=0.01)
    assert res.per_sample["n_points"]["s2"] == len(fit.distances[2])
    assert res.curves["distance_ced"].y[-1] == pytest.approx(1.0)


# --- failures ----------------------------------------------------------------------------------

def test_bad_predictions_are_failures_not_crashes():
    gt = face_surface(20, seed=2)
    good = gt.vertices + 0.5
    nan_v = gt.vertices.clone()
    nan_v[3] = math.nan
    recs = [
        _rec(good, gt, "ok"),
        _rec(nan_v, gt, "nan"),
        Reconstruction("empty", [FaceReconstruction(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.long))]),
        Reconstruction("nolm", [FaceReconstruction(good, gt.triangles)]),
        Reconstruction("badlm", [FaceReconstruction(good, gt.triangles, landmark_indices=torch.arange(5))]),
        Reconstruction("failed", [FaceReconstruction(None, None, failure="detector found no face")]),
        _rec(good, gt, "noscan"),
    ]
    samples = [_sample(gt, sid=r.sample_id) for r in recs]
    samples[-1].scan_vertices = None
    now = NoWScanToMesh()
    now.update(recs, samples)
    res = now.compute()
    assert set(res.failures) == {"nan", "empty", "nolm", "badlm", "failed", "noscan"}
    assert res.failures["failed"] == "detector found no face"
    assert "landmark" in res.failures["nolm"] and "non-finite" in res.failures["nan"]
    assert res.metrics["mean"].n == 1 and res.metrics["mean"].n_failed == 6
    micc = MICCRMSE(nose_tip="meta")
    samples[0].meta = {}  # no nose tip for "ok" -> failure with a reason
    micc.update(recs, samples)
    res = micc.compute()
    assert "nose tip" in res.failures["ok"]
    assert "nolm" not in res.failures  # MICC needs no landmarks (nose anchor / centroid init)
    assert res.metrics["rmse"].n + res.metrics["rmse"].n_failed == len(recs)


def test_micc_forehead_cut_and_empty_crop():
    gt = face_surface(30, seed=3)
    nose = gt.vertices[gt.landmark_indices[IBUG68_NOSE_TIP]]
    full = micc_reference(gt.vertices.numpy(), gt.triangles.numpy(), gt.vertices.numpy(), nose.numpy(), radius=200,
                          opts=FitOptions(max_iter=0), init="none")
    cut = micc_reference(gt.vertices.numpy(), gt.triangles.numpy(), gt.vertices.numpy(), nose.numpy(), radius=200,
                         forehead_cut=20.0, opts=FitOptions(max_iter=0), init="none")
    assert cut.kept.sum() < full.kept.sum()
    assert (gt.vertices.numpy()[cut.kept][:, 1] - nose.numpy()[1] <= 20.0).all()
    m = MICCRMSE(radius=1e-6, nose_tip="meta")
    far = _sample(gt)
    far.meta["scan_nose_tip"] = torch.tensor([1e4, 0, 0], dtype=torch.float64)
    m.update([_rec(gt.vertices, gt)], [far])
    assert "no scan point" in m.compute().failures["s0"]
