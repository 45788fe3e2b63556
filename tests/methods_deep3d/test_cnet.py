"""C-Net: aggregation strategies, start-as-averaging, frozen R-Net, checkpoints, Table 4 rows."""

from __future__ import annotations

import pytest
import torch

from b3f_methods.deep3d import Deep3D, Deep3DCNet, aggregate_identity, load_rnet_checkpoint, table4_errors
from b3f_methods.deep3d.evaluate import aggregation_table

from .conftest import SIZE


def make(**kw) -> Deep3DCNet:
    kw.setdefault("perceptual", "none")
    torch.manual_seed(0)
    return Deep3DCNet(facemodel="tiny", backbone="resnet18", image_size=SIZE, **kw)


# ----------------------------------------------------------------------------- aggregation math
ALPHA = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])  # one set, two images, two coefficients
CONF = torch.tensor([[[1.0, 0.5], [0.0, 1.5]]])


def test_aggregation_strategies_on_hand_made_tensors():
    assert torch.allclose(aggregate_identity(ALPHA, None, "mean"), torch.tensor([[2.0, 4.0]]))
    # S4: element-wise: (1*1 + 0*3) / 1 = 1 ; (0.5*2 + 1.5*6) / 2 = 5
    assert torch.allclose(aggregate_identity(ALPHA, CONF, "S4"), torch.tensor([[1.0, 5.0]]))
    # S2: global weights sum_i c_i = 1.5 and 1.5 -> plain mean
    assert torch.allclose(aggregate_identity(ALPHA, CONF, "S2"), torch.tensor([[2.0, 4.0]]))
    # S3: the image with the largest confidence sum (the second one: 1.5 > ... tie broken by argmax -> first)
    conf3 = torch.tensor([[[0.1, 0.2], [0.9, 0.9]]])
    assert torch.allclose(aggregate_identity(ALPHA, conf3, "S3"), torch.tensor([[3.0, 6.0]]))
    # S1: one global score per image: (3*1 + 1*3) / 4 = 1.5 ; (3*2 + 1*6) / 4 = 3
    score = torch.tensor([[[3.0], [1.0]]])
    assert torch.allclose(aggregate_identity(ALPHA, score, "S1"), torch.tensor([[1.5, 3.0]]))
    with pytest.raises(ValueError, match="needs confidences"):
        aggregate_identity(ALPHA, None, "S4")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_identity(ALPHA, CONF, "S5")


def test_table4_rows_on_hand_made_coefficients(tiny_fm):
    k = tiny_fm.layout.id
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(3, k, generator=g)
    noise = torch.randn(3, 4, k, generator=g) * 0.5
    alpha = gt[:, None] + noise
    rows = table4_errors(alpha, torch.ones(3, 4, k), torch.ones(3, 4, 1), gt, tiny_fm)
    assert set(rows) == {"per_image_mean", "shape_averaging", "S1", "S2", "S3", "S4"}
    # uniform confidences: S1/S2/S4 are shape averaging, S3 picks the first image
    for s in ("S1", "S2", "S4"):
        assert torch.allclose(rows[s], rows["shape_averaging"], atol=1e-5)
    assert (rows["shape_averaging"] < rows["per_image_mean"]).all()
    # confidences that select the exact image make S4 perfect
    alpha2 = alpha.clone()
    alpha2[:, 2] = gt
    conf = torch.full((3, 4, k), 1e-6)
    conf[:, 2] = 1.0
    rows2 = table4_errors(alpha2, conf, None, gt, tiny_fm)
    assert "S1" not in rows2
    assert torch.allclose(rows2["S4"], torch.zeros(3), atol=1e-3)
    assert torch.allclose(rows2["S3"], torch.zeros(3), atol=1e-3)


# ----------------------------------------------------------------------------- C-Net module
def test_cnet_starts_as_averaging(set_batch, tiny_fm):
    method = make()
    torch.nn.init.normal_(method.rnet.head.weight, std=0.05)  # views get different identities
    coeffs, conf = method.features(set_batch.image)
    assert conf.shape == (2, 3, tiny_fm.layout.id)
    assert torch.allclose(conf, torch.full_like(conf, 0.5))  # zero-initialised last FC
    agg = method.aggregate(coeffs, conf)
    alpha = coeffs[..., tiny_fm.layout.slice("id")]
    assert alpha.std(1).abs().sum() > 0
    assert torch.allclose(agg[..., tiny_fm.layout.slice("id")], alpha.mean(1, keepdim=True).expand_as(alpha), atol=1e-6)
    # everything else stays per view
    assert torch.allclose(agg[..., tiny_fm.layout.slice("exp")], coeffs[..., tiny_fm.layout.slice("exp")])


def test_cnet_training_step_updates_only_cnet(set_batch):
    method = make()
    torch.nn.init.normal_(method.rnet.head.weight, std=0.05)
    method.train()
    assert not method.rnet.training  # frozen R-Net keeps its BatchNorm statistics
    result, conf, _ = method.compute_loss(set_batch)
    assert {"photo", "landmark", "reg"} <= set(result.terms)
    result.total.backward()
    assert method.cnet.fc2.weight.grad is not None and method.cnet.fc2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.rnet.parameters())
    opt = method.configure_optimizers()
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-5)
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in method.cnet.parameters()}


def test_s1_has_one_output_and_s3_trains_with_s4(set_batch):
    s1 = make(aggregation="S1")
    _, conf = s1.features(set_batch.image)
    assert conf.shape == (2, 3, 1) and s1.train_strategy == "S1"
    assert make(aggregation="S3").train_strategy == "S4"
    with pytest.raises(ValueError, match="aggregation"):
        make(aggregation="max")


def test_reconstruct_returns_aggregate_and_per_view(set_batch, tiny_fm):
    method = make()
    torch.nn.init.normal_(method.rnet.head.weight, std=0.05)
    recs = method.reconstruct(set_batch)
    assert len(recs) == 2
    for r in recs:
        assert r.face.validate() is None and len(r.per_view) == 3
        assert all(v.validate() is None for v in r.per_view)
        assert r.extras["confidence"].shape == (3, tiny_fm.layout.id)
    # the aggregated face is the neutral shape of the averaged identity (conf = 0.5 at init)
    coeffs, _ = method.features(set_batch.image)
    alpha = coeffs[0, :, tiny_fm.layout.slice("id")].mean(0, keepdim=True)
    expect = tiny_fm.shape(alpha, torch.zeros(1, tiny_fm.layout.exp))[0]
    assert torch.allclose(recs[0].face.vertices, expect, atol=1e-4)


def test_rnet_checkpoint_loading(tmp_path, set_batch):
    torch.manual_seed(1)
    rnet_method = Deep3D(facemodel="tiny", backbone="resnet18", image_size=SIZE, perceptual="none")
    torch.nn.init.normal_(rnet_method.rnet.head.weight, std=0.05)
    path = tmp_path / "deep3d.ckpt"
    torch.save({"state_dict": rnet_method.state_dict(), "hyper_parameters": dict(rnet_method.hparams)}, path)
    method = make(rnet_checkpoint=str(path))
    assert not any("rnet_checkpoint" in w for w in method.config_warnings)
    img = set_batch.image.flatten(0, 1)
    rnet_method.eval()
    with torch.no_grad():
        assert torch.allclose(method.rnet(img)[0], rnet_method.rnet(img)[0], atol=1e-5)
    with pytest.raises(FileNotFoundError, match="train Deep3D first"):
        make(rnet_checkpoint=str(tmp_path / "missing.ckpt"))
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, bad)
    with pytest.raises(ValueError, match="backbone"):
        load_rnet_checkpoint(bad, rnet_method.facemodel.layout)


def test_aggregation_table_on_synthetic_sets(set_batch):
    elem = make()
    torch.nn.init.normal_(elem.rnet.head.weight, std=0.05)
    glob = make(aggregation="S1")
    glob.rnet.load_state_dict(elem.rnet.state_dict())
    table = aggregation_table(elem, [set_batch], global_score=glob)
    assert table["sets"] == 2
    assert set(table["rows"]) == {"per_image_mean", "shape_averaging", "S1", "S2", "S3", "S4"}
    rows = table["rows"]
    assert rows["S4"]["mean"] == pytest.approx(rows["shape_averaging"]["mean"], rel=1e-4)  # untrained = averaging
