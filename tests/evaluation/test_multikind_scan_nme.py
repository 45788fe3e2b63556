"""NME, MICC and NoW per view / per face (issue 12): the units of ``iter_scored_faces``
(``<id>#v<k>`` per view, ``<id>#<k>`` per matched face), known answers from the oracle."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.data.datamodules import SampleCollate, SyntheticDataModule
from benchmark3dface.metrics import NOW7_FROM_IBUG68, as_samples

baselines = pytest.importorskip("b3f_methods.baselines", reason="the built-in method plugins are not installed")


def _samples(kind: str, n: int, size: int, **options):
    dm = SyntheticDataModule(mode=kind, image_size=size, train_size=0, val_size=0, test_size=n, seed=2,
                             batch_size=n, num_workers=0, options=options, drop_last=False)
    dm.setup("test")
    batch = SampleCollate(fill_missing=True)([dm.datasets["test"][i] for i in range(n)])
    return batch, as_samples(batch)


def _with_view_scans(s, stride: int = 8):
    """A multi-view sample whose scan is each view's GT mesh (one scan per view), built by hand
    and checked against the runner's targets (evaluation/targets.with_gt_scans)."""
    from benchmark3dface.evaluation.targets import with_gt_scans

    lm = s.vertices[:, s.landmark_indices.long()]  # (V, 68, 3)
    (t,) = with_gt_scans(s, stride)
    assert torch.equal(t.scan_vertices, s.vertices[:, ::stride])
    assert torch.equal(t.scan_landmarks7, lm[:, torch.as_tensor(NOW7_FROM_IBUG68)])
    assert torch.equal(t.meta["scan_nose_tip"], lm[:, 30])
    return t


def test_nme_per_view_and_per_face():
    from benchmark3dface.metrics.nme import AFLW2000NME

    batch, samples = _samples("multiview", 2, 96, view_yaws=[-30, 0, 30])
    recs = baselines.Oracle(image_size=96).reconstruct(batch)
    m = AFLW2000NME()
    m.update(recs, samples)
    res = m.compute()
    assert sorted(res.per_sample["nme"]) == sorted(f"{s.sample_id}#v{k}" for s in samples for k in range(3))
    assert max(res.per_sample["nme"].values()) < 1e-3
    swapped = AFLW2000NME()
    for r in recs:
        r.per_view = r.per_view[::-1]  # left and right views exchanged
    swapped.update(recs, samples)
    got = swapped.compute().per_sample["nme"]
    sid = samples[0].sample_id
    assert got[f"{sid}#v1"] < 1e-3 and got[f"{sid}#v0"] > 1.0

    batch, samples = _samples("multiface", 2, 192)
    recs = baselines.Oracle(image_size=192).reconstruct(batch)
    for r in recs:
        r.faces = r.faces[::-1]  # order does not matter: faces are matched
    m = AFLW2000NME()
    m.update(recs, samples)
    res = m.compute()
    assert len(res.per_sample["nme"]) == sum(len(s.lm68) for s in samples)
    assert max(res.per_sample["nme"].values()) < 1e-3 and not res.failures


@pytest.mark.parametrize("protocol", ["micc", "now"])
def test_scan_protocols_per_view(protocol):
    from benchmark3dface.evaluation.protocols import build

    batch, samples = _samples("multiview", 1, 96, view_yaws=[-30, 0, 30])
    samples = [_with_view_scans(s) for s in samples]
    recs = baselines.Oracle(image_size=96).reconstruct(batch)
    m = build(protocol, max_iter=10, tol=1e-3)
    m.update(recs, samples)
    res = m.compute()
    key = "rmse" if protocol == "micc" else "mean"
    sid = samples[0].sample_id
    assert sorted(res.per_sample[key]) == [f"{sid}#v{k}" for k in range(3)]
    assert max(res.per_sample[key].values()) < 0.05, res.per_sample[key]
    # view 0 reconstructed by the mean face instead: only that view's score moves
    recs[0].per_view[0] = baselines.MeanFace(image_size=96).place(batch.lm68[0, :1], None, 96)[0]
    wrong = build(protocol, max_iter=10, tol=1e-3)
    wrong.update(recs, samples)
    got = wrong.compute().per_sample[key]
    assert got[f"{sid}#v0"] > 0.3 and got[f"{sid}#v1"] < 0.05
