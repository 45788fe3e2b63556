"""AFLW2000-3D NME on the real sample files, multi-face matching, dense NME."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io as sio
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import AFLW2000NME, AFLW2000DenseNME, match_faces


@pytest.fixture(scope="module")
def aflw(shared_data):
    """(sample_id, GT (68, 2) from pt3d_68, yaw radians) of every real AFLW2000-3D sample file
    (skipped when ../shared/data is absent)."""
    folder = shared_data("aflw2000_sample")
    out = []
    for mat in sorted(folder.glob("*.mat")):
        m = sio.loadmat(mat)
        out.append((mat.stem, np.asarray(m["pt3d_68"], np.float64)[:2].T, float(m["Pose_Para"][0, 1])))
    assert out, f"no .mat files in {folder}"
    return out


def _batch(aflw, shift=(0.0, 0.0), field="lm68"):
    samples, recs = [], []
    for sid, gt, yaw in aflw:
        g = torch.from_numpy(gt)
        kw = {"lm68": g} if field == "lm68" else {"lm68_3d": torch.cat([g, torch.zeros(68, 1, dtype=g.dtype)], 1)}
        samples.append(Sample(sample_id=sid, yaw=torch.tensor(yaw), **kw))
        recs.append(Reconstruction(sid, [FaceReconstruction(None, None, landmarks2d=g + torch.tensor(shift))]))
    return recs, samples


def test_gt_against_itself_is_zero(aflw):
    m = AFLW2000NME()
    m.update(*_batch(aflw))
    res = m.compute()
    assert res.metrics["nme_all"].value == 0.0 and res.metrics["nme_all"].n == len(aflw)


@pytest.mark.parametrize("field", ["lm68", "lm68_3d"])
def test_known_shift_gives_expected_nme_and_bins(aflw, field):
    dx, dy = 1.5, -2.0
    m = AFLW2000NME(gt=field)
    m.update(*_batch(aflw, (dx, dy), field))
    res = m.compute()
    expected, bins = {}, {0: [], 1: [], 2: []}
    for sid, gt, yaw in aflw:
        w = gt[:, 0].max() - gt[:, 0].min()
        h = gt[:, 1].max() - gt[:, 1].min()
        expected[sid] = 100 * math.hypot(dx, dy) / math.sqrt(w * h)
        a = abs(math.degrees(yaw))
        bins[0 if a <= 30 else 1 if a <= 60 else 2].append(expected[sid])
    for sid, v in expected.items():
        assert res.per_sample["nme"][sid] == pytest.approx(v, rel=1e-9)
    means = [np.mean(bins[b]) if bins[b] else math.nan for b in range(3)]
    assert res.metrics["nme_0_30"].value == pytest.approx(means[0])
    assert res.metrics["nme_30_60"].value == pytest.approx(means[1])
    assert res.metrics["nme_60_plus"].value == pytest.approx(means[2])
    if all(bins.values()):
        assert res.metrics["nme_mean"].value == pytest.approx(np.mean(means))
    assert res.metrics["nme_all"].value == pytest.approx(np.mean(list(expected.values())))
    ced = res.curves["nme_ced"]
    assert ced.y[-1] == pytest.approx(1.0) and ced.y[0] == 0.0


def test_bad_landmarks_are_failures_in_their_bin(aflw):
    recs, samples = _batch(aflw)
    nan = recs[0].faces[0].landmarks2d.clone()
    nan[5] = math.nan
    recs[0] = Reconstruction(recs[0].sample_id, [FaceReconstruction(None, None, landmarks2d=nan)])
    recs[1] = Reconstruction(recs[1].sample_id, [FaceReconstruction(None, None, landmarks2d=torch.zeros(5, 2))])
    recs[2] = Reconstruction(recs[2].sample_id, [FaceReconstruction(None, None)])
    m = AFLW2000NME()
    m.update(recs, samples)
    res = m.compute()
    assert len(res.failures) == 3
    assert "non-finite" in res.failures[aflw[0][0]] and "(68, 2)" in res.failures[aflw[1][0]]
    assert "no 2D landmarks" in res.failures[aflw[2][0]]
    total_failed = sum(res.metrics[k].n_failed for k in ("nme_0_30", "nme_30_60", "nme_60_plus"))
    assert total_failed == 3 and res.metrics["nme_all"].n_failed == 3


def _face_lm(cx, cy, size=60.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([cx, cy], dtype=torch.float64) + size * (torch.rand(68, 2, generator=g, dtype=torch.float64)
                                                                 - 0.5)


def test_multiface_matching_and_missed_face():
    gts = torch.stack([_face_lm(100, 100, seed=1), _face_lm(300, 120, seed=2), _face_lm(200, 300, seed=3)])
    sample = Sample(kind="multiface", sample_id="img", lm68=gts,
                    centers=torch.tensor([[100.0, 100], [300, 120], [200, 300]]), yaw=torch.zeros(3))
    # predictions in another order, one face missed, one spurious far away
    faces = [FaceReconstruction(None, None, landmarks2d=gts[2] + 1.0, center=torch.tensor([201.0, 299])),
             FaceReconstruction(None, None, landmarks2d=gts[0], center=torch.tensor([99.0, 101])),
             FaceReconstruction(None, None, landmarks2d=gts[0], center=torch.tensor([900.0, 900]))]
    m = AFLW2000NME()
    m.update([Reconstruction("img", faces)], [sample])
    res = m.compute()
    assert res.failures == {"img#1": "face not detected"}
    assert res.per_sample["nme"]["img#0"] == 0.0
    assert res.per_sample["nme"]["img#2"] > 0.0
    assert match_faces(torch.zeros(0, 2), torch.ones(2, 2), 10.0) == [None, None]


def test_dense_nme_uses_projected_vertices():
    g = torch.Generator().manual_seed(0)
    verts = torch.randn(50, 3, generator=g, dtype=torch.float64) * 40
    rot = torch.eye(3, dtype=torch.float64)
    cam = {"kind": "weak", "scale": 1.0, "principal": (112.0, 112.0)}
    face = FaceReconstruction(verts, torch.zeros(1, 3, dtype=torch.long), rotation=rot, camera=cam)
    uv = torch.stack([112 + verts[:, 0], 112 - verts[:, 1]], -1)
    lm = uv[:68] if len(uv) >= 68 else torch.cat([uv, uv[:18]])
    sample = Sample(sample_id="d", lm68=lm, meta={"vertices_image": uv + torch.tensor([3.0, 4.0])})
    m = AFLW2000DenseNME()
    m.update([Reconstruction("d", [face])], [sample])
    res = m.compute()
    w = lm[:, 0].max() - lm[:, 0].min()
    h = lm[:, 1].max() - lm[:, 1].min()
    assert res.per_sample["nme"]["d"] == pytest.approx(float(100 * 5.0 / torch.sqrt(w * h)))
    # wrong topology is a failure
    small = FaceReconstruction(verts[:10], torch.zeros(1, 3, dtype=torch.long), rotation=rot, camera=cam)
    m2 = AFLW2000DenseNME()
    m2.update([Reconstruction("d", [small])], [sample])
    assert "topology" in m2.compute().failures["d"]
