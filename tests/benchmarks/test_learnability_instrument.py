"""The instrument of benchmarks/learnability.py (the script itself trains for minutes): explained
variance against the scored samples' own variance, and one head per target group (no target
reads another group's outputs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "learnability.py"


@pytest.fixture(scope="module")
def lrn(benchmark_script):
    return benchmark_script("learnability")


@pytest.fixture(scope="module")
def layout():
    from benchmark3dface.facemodel.layout import CoeffLayout

    return CoeffLayout(id=8, exp=4, tex=4)


# ------------------------------------------------------------------ explained variance
def test_perfect_prediction_explains_everything(lrn):
    y = torch.randn(50, 7, generator=torch.Generator().manual_seed(1)) * 3 + 5
    assert lrn.explained_variance(y.clone(), y) == pytest.approx(1.0, abs=1e-12)


def test_predicting_the_scored_samples_mean_explains_nothing(lrn):
    y = torch.randn(40, 3, generator=torch.Generator().manual_seed(2)) * torch.tensor([1.0, 10.0, 0.1])
    assert lrn.explained_variance(y.mean(0).expand_as(y), y) == pytest.approx(0.0, abs=1e-12)


def test_known_answer_by_hand(lrn):
    # targets 0 and 2 (mean 1, SST 2); predictions 0.5 and 1.5: SSE 0.5 -> 1 - 0.5 / 2 = 0.75
    assert lrn.explained_variance(torch.tensor([0.5, 1.5]), torch.tensor([0.0, 2.0])) == pytest.approx(0.75)
    # pooled over columns: column sums SSE (0.5 + 2) over SST (2 + 8)
    p = torch.tensor([[0.5, 1.0], [1.5, 3.0]])
    y = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    assert lrn.explained_variance(p, y) == pytest.approx(1 - 2.5 / 10)


def test_normalised_by_the_test_sets_own_variance_not_the_training_sets(lrn):
    """The old script divided the test MSE by the variance of 64 *training* samples: with a
    training set 100x more spread than the test set, predicting the training mean scored ~0.99
    there. Against the test set's own variance it explains nothing (or less)."""
    g = torch.Generator().manual_seed(3)
    train = torch.randn(64, 3, generator=g) * 10.0
    test = torch.randn(200, 3, generator=g) * 1.0 + 0.5
    pred = test.mean(0).expand_as(test)  # the test mean: explains exactly nothing of the test set
    old = 1 - float(((pred - test) ** 2).mean()) / float(((train - train.mean(0)) ** 2).mean())
    assert old > 0.95  # what the old normalisation reported
    assert lrn.explained_variance(pred, test) == pytest.approx(0.0, abs=1e-12)
    # and an independent numpy computation for an imperfect prediction
    noisy = test + 0.3 * torch.randn(test.shape, generator=g)
    t, p = test.numpy().astype(np.float64), noisy.numpy().astype(np.float64)
    want = 1 - ((p - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()
    assert lrn.explained_variance(noisy, test) == pytest.approx(want, rel=1e-9)


def test_bad_input_is_one_clear_error(lrn):
    with pytest.raises(ValueError, match="differ"):
        lrn.explained_variance(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="constant"):
        lrn.explained_variance(torch.zeros(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match=">= 2 samples"):
        lrn.explained_variance(torch.zeros(1, 2), torch.ones(1, 2))


# ------------------------------------------------------------------ heads
def _tiny_net(lrn, layout, targets=("angles", "exp3", "lm68", "shape")):
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return lrn.MultiHeadNet(lrn.head_sizes(targets, layout), backbone=None, trunk=trunk, feature_dim=4)


def _batch(layout, n=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(image=torch.rand(n, 3, size, size, generator=g),
                           coeffs=torch.randn(n, layout.size, generator=g),
                           lm68=torch.rand(n, 68, 2, generator=g) * size,
                           vertices=torch.randn(n, 10, 3, generator=g))


def test_one_head_per_target_group_with_its_own_parameters(lrn, layout):
    sizes = lrn.head_sizes(("angles", "exp3", "lm68", "shape"), layout)
    assert sizes == {"pose": 3, "shape": layout.id + layout.exp, "lm68": 136}
    assert lrn.head_sizes(("lm68",), layout) == {"lm68": 136}
    net = _tiny_net(lrn, layout)
    ptrs = {name: {p.data_ptr() for p in head.parameters()} for name, head in net.heads.items()}
    names = list(ptrs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not ptrs[a] & ptrs[b], f"heads {a} and {b} share a parameter"


def test_targets_read_only_their_own_heads_outputs(lrn, layout):
    """Perturbing one head's outputs changes only the predictions of the targets of that head."""
    batch = _batch(layout)
    sub = torch.arange(0, 10, 2)
    decoded = (sub, torch.zeros(5, 3), torch.randn(layout.id, 5, 3), torch.randn(layout.exp, 5, 3))
    targets = ("angles", "exp3", "lm68", "shape")
    g = torch.Generator().manual_seed(5)
    outs = {h: torch.randn(6, n, generator=g) for h, n in lrn.head_sizes(targets, layout).items()}
    base = lrn.target_pairs(batch, outs, targets, layout, 16, decoded)
    # exp3 reads the first 3 expression outputs of the shape head (after the identity outputs)
    assert torch.equal(base["exp3"][0], outs["shape"][:, layout.id:layout.id + 3])
    assert torch.equal(base["exp3"][1], batch.coeffs[:, layout.slice("exp")][:, :3])
    assert torch.equal(base["lm68"][1], (batch.lm68 / 16 * 2 - 1).flatten(1))
    for head in outs:
        moved = dict(outs, **{head: outs[head] + 1.0})
        pairs = lrn.target_pairs(batch, moved, targets, layout, 16, decoded)
        for t in targets:
            changed = not torch.equal(pairs[t][0], base[t][0])
            assert changed == (lrn.HEAD_OF[t] == head), (head, t)
            assert torch.equal(pairs[t][1], base[t][1])  # truths never depend on the outputs


def test_training_only_the_landmark_loss_leaves_the_coefficient_heads_unchanged(lrn, layout):
    """The old script read landmarks from the coefficient outputs 0-135 (identity and expression
    outputs): a landmark loss moved the expression outputs. With separate heads it cannot."""
    net = _tiny_net(lrn, layout)
    batch = _batch(layout)
    with torch.no_grad():
        before = net(batch.image)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    var = {"lm68": 1.0}
    for _ in range(5):
        lrn.train_step(net, opt, batch, ("lm68",), layout, 16, var)
    with torch.no_grad():
        after = net(batch.image)
    assert not torch.allclose(after["lm68"], before["lm68"])  # the landmark head did learn
    assert torch.equal(after["shape"], before["shape"])  # zero-initialised and untouched: still 0
    assert torch.equal(after["pose"], before["pose"])
    assert all(p.grad is None or not p.grad.any() for p in net.heads["shape"].parameters())


def test_other_heads_outputs_do_not_depend_on_the_landmark_head(lrn, layout):
    net = _tiny_net(lrn, layout)
    with torch.no_grad():
        for head in net.heads.values():  # non-zero heads, so a shared output would show
            head.weight.normal_()
            head.bias.normal_()
        x = torch.rand(3, 3, 16, 16)
        before = net(x)
        net.heads["lm68"].weight.add_(5.0)
        net.heads["lm68"].bias.add_(5.0)
        after = net(x)
    assert not torch.equal(after["lm68"], before["lm68"])
    assert torch.equal(after["shape"], before["shape"]) and torch.equal(after["pose"], before["pose"])


def test_backbone_trunk_builds_and_pools(lrn, layout):
    """The default trunk is the R-Net's timm backbone (no weights), pooled to (B, feature_dim)."""
    pytest.importorskip("timm")
    net = lrn.MultiHeadNet(lrn.head_sizes(("angles", "lm68"), layout), backbone="resnet18")
    out = net(torch.rand(2, 3, 32, 32))
    assert set(out) == {"pose", "lm68"} and out["pose"].shape == (2, 3) and out["lm68"].shape == (2, 136)
    assert not out["pose"].any()  # zero-initialised heads start at the targets' zero
    with pytest.raises(ValueError, match="exactly one"):
        lrn.MultiHeadNet({"pose": 3}, backbone=None)


def test_old_script_name_is_an_alias():
    alias = SCRIPT.with_name("deep3d_learnability.py")
    spec = importlib.util.spec_from_file_location("deep3d_learnability_alias", alias)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main.__module__ == mod.learnability.__name__ and hasattr(mod.learnability, "explained_variance")
