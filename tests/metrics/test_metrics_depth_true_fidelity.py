"""Depth error, true error and the metric-fidelity report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import (
    MICCRMSE,
    DepthError,
    TrueError,
    common_valid_mask,
    compare_depth,
    fidelity_report,
    format_fidelity,
    metric_fidelity,
)
from benchmark3dface.metrics.geometry import IBUG68_NOSE_TIP, vertex_normals
from benchmark3dface.metrics.synthetic import face_surface, random_similarity, relief


def _depth(h=20, w=30, base=800.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = base + 20 * torch.rand(h, w, generator=g, dtype=torch.float64)
    d[:3] = math.nan  # background
    return d


def _drec(sid, depth):
    return Reconstruction(sid, [FaceReconstruction(None, None, depth=depth)])


def test_depth_constant_offset_and_percentile():
    gt = _depth()
    pred = gt + 2.5
    m = DepthError()
    m.update([_drec("a", pred)], [Sample(sample_id="a", depth=gt)])
    res = m.compute()
    assert res.per_sample["mean"]["a"] == pytest.approx(2.5)
    assert res.per_sample["p90"]["a"] == pytest.approx(2.5)
    assert res.per_sample["n_pixels"]["a"] == 17 * 30
    aligned = DepthError(align="median")
    aligned.update([_drec("a", pred)], [Sample(sample_id="a", depth=gt)])
    assert aligned.compute().per_sample["mean"]["a"] == pytest.approx(0.0, abs=1e-9)


def test_depth_p90_is_the_90th_percentile():
    gt = torch.full((10, 10), 500.0, dtype=torch.float64)
    err = torch.arange(100, dtype=torch.float64).reshape(10, 10) / 10  # 0.0 .. 9.9 mm
    m = DepthError()
    m.update([_drec("a", gt + err)], [Sample(sample_id="a", depth=gt)])
    res = m.compute()
    assert res.per_sample["mean"]["a"] == pytest.approx(float(err.mean()))
    assert res.per_sample["p90"]["a"] == pytest.approx(float(np.quantile(err.numpy(), 0.9)))


def test_depth_common_mask_over_methods():
    gt = _depth()
    a = gt + 1.0
    b = gt - 3.0
    a[5:8] = math.nan  # method a has no surface there; b is much worse there
    b[5:8] += 100.0
    common = common_valid_mask(gt, {"a": a, "b": b})
    assert int(common.sum()) == (20 - 3 - 3) * 30
    stats_ab = compare_depth(gt, {"a": a, "b": b})
    assert stats_ab["a"] == pytest.approx((1.0, 1.0)) and stats_ab["b"] == pytest.approx((3.0, 3.0))
    alone = DepthError()
    alone.update([_drec("s", b)], [Sample(sample_id="s", depth=gt)])
    assert alone.compute().per_sample["mean"]["s"] > 3.0
    joint = DepthError()
    joint.update([_drec("s", b)], [Sample(sample_id="s", depth=gt)], common_masks=[common])
    assert joint.compute().per_sample["mean"]["s"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="shape"):
        common_valid_mask(gt, {"x": gt[:5]})


def test_depth_failures():
    gt = _depth()
    m = DepthError()
    m.update([_drec("nodepth", None), _drec("shape", gt[:4]), _drec("nan", torch.full_like(gt, math.nan)),
              Reconstruction("nogt", [FaceReconstruction(None, None, depth=gt)])],
             [Sample(sample_id="nodepth", depth=gt), Sample(sample_id="shape", depth=gt),
              Sample(sample_id="nan", depth=gt), Sample(sample_id="nogt")])
    res = m.compute()
    assert set(res.failures) == {"nodepth", "shape", "nan", "nogt"}
    assert res.metrics["mean"].n == 0 and res.metrics["mean"].n_failed == 4 and math.isnan(res.metrics["mean"].value)


def test_true_error_is_similarity_invariant():
    rng = np.random.default_rng(0)
    gt = face_surface(20)
    s, r, t = random_similarity(rng)
    noise = torch.from_numpy(rng.normal(size=gt.vertices.shape)) * 0.3
    recs = [Reconstruction("exact", [FaceReconstruction(s * gt.vertices @ r.T + t, gt.triangles)]),
            Reconstruction("noisy", [FaceReconstruction(s * (gt.vertices + noise) @ r.T + t, gt.triangles)]),
            Reconstruction("plain", [FaceReconstruction(gt.vertices + noise, gt.triangles)]),
            Reconstruction("topo", [FaceReconstruction(gt.vertices[:50], gt.triangles[:10])])]
    samples = [Sample(sample_id=x.sample_id, vertices=gt.vertices) for x in recs]
    m = TrueError()
    m.update(recs, samples)
    res = m.compute()
    assert res.per_sample["mean"]["exact"] < 1e-9
    assert res.per_sample["mean"]["noisy"] == pytest.approx(res.per_sample["mean"]["plain"], rel=1e-6)
    assert 0.3 < res.per_sample["rmse"]["plain"] < 0.6  # ~ sqrt(3) * 0.3, a little absorbed
    assert "topology" in res.failures["topo"]


def test_fidelity_correlations():
    ids = [f"s{i}" for i in range(20)]
    truth = {k: float(i) for i, k in enumerate(ids)}
    monotone = {k: math.exp(v / 5) for k, v in truth.items()}
    f = metric_fidelity(monotone, truth)
    assert f.spearman == pytest.approx(1.0) and f.pearson < 1.0 and f.n == 20
    rng = np.random.default_rng(0)
    noisy = {k: v + rng.normal() * 5 for k, v in truth.items()}
    f2 = metric_fidelity(noisy, truth)
    assert f2.pearson == pytest.approx(stats.pearsonr([noisy[k] for k in ids], [truth[k] for k in ids])[0])
    assert math.isnan(metric_fidelity({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 3.0}).pearson)


def test_fidelity_report_on_synthetic_faces():
    """MICC's ICP RMSE estimate vs the true error over synthetic predictions whose error grows."""
    rng = np.random.default_rng(1)
    gt = face_surface(24, seed=4)
    lm = gt.landmark_indices
    nose = gt.vertices[lm[IBUG68_NOSE_TIP]]
    recs, samples = [], []
    for i in range(8):
        pred = gt.vertices + relief(gt.uv, rng, 0.5 + 0.5 * i)[:, None] * vertex_normals(gt.vertices, gt.triangles)
        recs.append(Reconstruction(f"s{i}", [FaceReconstruction(pred, gt.triangles, landmark_indices=lm)]))
        samples.append(Sample(sample_id=f"s{i}", vertices=gt.vertices, scan_vertices=gt.vertices,
                              meta={"scan_nose_tip": nose}))
    true_m, micc = TrueError(), MICCRMSE(radius=80.0, max_iter=30)
    true_m.update(recs, samples)
    micc.update(recs, samples)
    rows = fidelity_report({"micc": micc.compute()}, true_m.compute())
    assert rows[0].protocol == "micc" and rows[0].key == "rmse" and rows[0].n == 8
    assert rows[0].spearman > 0.7  # growing error is seen as growing
    assert "| micc | rmse |" in format_fidelity(rows)
