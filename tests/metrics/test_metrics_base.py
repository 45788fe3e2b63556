"""ProtocolMetric plumbing: records, failures, dedup, DDP sync and merge, ProtocolResult."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import PROTOCOLS, ProtocolResult, TrueError, build_protocol
from benchmark3dface.metrics.base import as_samples, decode_strings, encode_strings, pair_up


def _mesh(n: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g, dtype=torch.float64) * 30
    f = torch.randint(0, n, (2 * n, 3), generator=g)
    return v, f


def _true_error_batch(ids: list[str], noise: list[float]):
    recs, samples = [], []
    for sid, nz in zip(ids, noise):
        v, f = _mesh(seed=len(sid))
        g = torch.Generator().manual_seed(hash(sid) % 1000)
        pred = v + nz * torch.randn(v.shape, generator=g, dtype=torch.float64)
        recs.append(Reconstruction(sid, [FaceReconstruction(pred, f)]))
        samples.append(Sample(sample_id=sid, vertices=v))
    return recs, samples


def test_strings_roundtrip():
    s = ["a", "", "subject_01/video#3", "é€"]
    data, lens = encode_strings(s)
    assert data.dtype == torch.uint8 and lens.tolist() == [1, 0, len("subject_01/video#3"), len("é€".encode())]
    assert decode_strings(data, lens) == s
    # an idle DDP rank contributes an empty float tensor: decoding must survive the promotion
    assert decode_strings(torch.cat([torch.zeros(0), data.float()]), lens) == s


def test_failures_are_recorded_and_counted():
    recs, samples = _true_error_batch(["s0", "s1", "s2"], [0.0, 1.0, 2.0])
    recs[1] = Reconstruction("s1", [FaceReconstruction(torch.full((30, 3), math.nan), recs[1].faces[0].triangles)])
    recs[2] = Reconstruction("s2", [])  # no face at all
    m = TrueError()
    m.update(recs, samples)
    res = m.compute()
    assert res.failures == {"s1": "non-finite vertices", "s2": "no face reconstructed"}
    assert res.metrics["mean"].n == 1 and res.metrics["mean"].n_failed == 2
    assert list(res.per_sample["mean"]) == ["s0"]


def test_missing_reconstruction_is_a_failure():
    recs, samples = _true_error_batch(["a", "b"], [0.5, 0.5])
    m = TrueError()
    m.update(recs[:1], samples)  # matched by sample id; "b" has none
    res = m.compute()
    assert res.failures == {"b": "no reconstruction"}


def test_duplicate_ids_counted_once():
    recs, samples = _true_error_batch(["a", "b"], [0.5, 1.0])
    m = TrueError()
    m.update(recs, samples)
    m.update(recs[:1], samples[:1])  # DistributedSampler padding repeats samples
    res = m.compute()
    assert res.metrics["mean"].n == 2


def _fake_gather(others):
    """A dist_sync_fn that returns [local, other ranks' same-named state] in rank order."""
    def gather(tensor, group=None):
        name = gather.names.pop(0)
        return [tensor] + [o[name] for o in others]
    return gather


def _sync_like_ddp(local, others):
    """Run torchmetrics' real DDP sync path (``Metric.sync``) with a fake all_gather; ``local``
    is built with ``sync_on_compute=False`` so ``compute`` reads the synced states."""
    states = [{k: (torch.cat(v) if isinstance(v, list) and v else
                   (torch.zeros(0) if isinstance(v, list) else v)) for k, v in o.metric_state.items()} for o in others]
    gather = _fake_gather(states)
    gather.names = [k for k in local._reductions]
    local.sync(dist_sync_fn=gather, should_sync=True, distributed_available=lambda: True)


def test_ddp_sync_then_compute_matches_single_process():
    ids = [f"s{i}" for i in range(6)]
    recs, samples = _true_error_batch(ids, [0.2 * i for i in range(6)])
    single = TrueError()
    single.update(recs, samples)
    expected = single.compute()

    r0, r1 = TrueError(sync_on_compute=False), TrueError()
    r0.update(recs[:4], samples[:4])
    r1.update(recs[4:], samples[4:])
    r1.update(recs[:1], samples[:1])  # a padded duplicate on rank 1
    _sync_like_ddp(r0, [r1])
    got = r0.compute()
    assert got.per_sample["mean"].keys() == expected.per_sample["mean"].keys()
    for k, v in expected.per_sample["mean"].items():
        assert got.per_sample["mean"][k] == pytest.approx(v, abs=1e-12)
    assert got.metrics["mean"].value == pytest.approx(expected.metrics["mean"].value, abs=1e-12)


def test_ddp_sync_with_idle_rank():
    recs, samples = _true_error_batch(["a", "b"], [0.3, 0.6])
    r0, idle = TrueError(sync_on_compute=False), TrueError()
    r0.update(recs, samples)
    _sync_like_ddp(r0, [idle])
    assert r0.compute().metrics["mean"].n == 2
    # and the idle rank receiving the others' states
    r0b = TrueError()
    r0b.update(recs, samples)
    idle2 = TrueError(sync_on_compute=False)
    _sync_like_ddp(idle2, [r0b])
    assert idle2.compute().metrics["mean"].n == 2


def test_merge_state():
    recs, samples = _true_error_batch(["a", "b", "c"], [0.3, 0.6, 0.9])
    m1, m2 = TrueError(), TrueError()
    m1.update(recs[:2], samples[:2])
    m2.update(recs[2:], samples[2:])
    m1.merge_state(m2)
    assert sorted(m1.compute().per_sample["mean"]) == ["a", "b", "c"]


def test_result_json_roundtrip():
    recs, samples = _true_error_batch(["a", "b"], [0.3, 0.6])
    m = TrueError()
    m.update(recs, samples)
    res = m.compute()
    back = ProtocolResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back == res
    assert set(res.scalars()) == {"mean", "rmse"}
    assert "mean" in res.summary()


def test_collated_batch_is_split():
    v, _f = _mesh()
    batch = Sample(sample_id=["a", "b"], vertices=torch.stack([v, v + 1]), meta=[{}, {}])
    parts = as_samples(batch)
    assert [p.sample_id for p in parts] == ["a", "b"]
    assert torch.equal(parts[1].vertices, v + 1)
    recs = [Reconstruction("b", []), Reconstruction("a", [])]
    assert [r.sample_id for r, _ in pair_up(recs, batch)] == ["a", "b"]


def test_registry():
    assert {"micc", "now", "now_metrical", "aflw2000_nme", "depth", "true_error"} <= set(PROTOCOLS)
    assert isinstance(build_protocol("micc", radius=90.0), PROTOCOLS["micc"])
    with pytest.raises(KeyError, match="unknown protocol"):
        build_protocol("nope")
    with pytest.raises(ValueError, match="backend"):
        build_protocol("now", backend="gpu")


def test_ced_curve_counts_failures():
    from benchmark3dface.metrics.base import ced_curve
    c = ced_curve(np.array([0.5, 1.5]), n_failed=2, x_max=2.0, steps=5)
    assert c.y[-1] == pytest.approx(0.5)  # 2 of 4 samples ever reach the curve
    assert c.y[0] == 0.0
