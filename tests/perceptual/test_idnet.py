"""IdNet: training on tiny synthetic identity sets improves verification; cache and CLI."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmark3dface.data.synthetic.testing import tiny_facemodel
from benchmark3dface.perceptual import idnet as idnet_mod
from benchmark3dface.perceptual.idnet import (IdNet, IdNetConfig, MarginSoftmax, best_threshold, identity_crops,
                                              idnet_cache_path, load_idnet, load_or_train_idnet, roc_auc, save_idnet,
                                              train_idnet)

TINY = dict(backbone="resnet18", embedding_dim=32, input_size=40, identities=10, sets=40, set_size=4, epochs=12,
            batch_size=32, lr=3e-3, render_size=48, eval_sets=10,
            synth={"yaw_max": 20.0, "pitch_max": 10.0, "occlusion_prob": 0.0, "backgrounds": ["plain"],
                   "blur_prob": 0.0, "jpeg_prob": 0.0, "noise_max": 0.0, "id_std": 2.0, "tex_std": 2.0})


@pytest.fixture(scope="module")
def tiny_data():
    fm = tiny_facemodel()
    cfg = IdNetConfig(**TINY)
    return cfg, {"train": identity_crops(cfg, "train", cfg.sets, facemodel=fm),
                 "val": identity_crops(cfg, "val", cfg.eval_sets, facemodel=fm),
                 "test": identity_crops(cfg, "test", cfg.eval_sets, facemodel=fm),
                 # new renders (other expressions, poses, lights) of the training identities
                 "unseen": identity_crops(cfg, "train", cfg.eval_sets, seed_offset=1, facemodel=fm)}


def test_identity_crops_are_labelled_sets(tiny_data):
    cfg, data = tiny_data
    crops, labels = data["train"]
    assert crops.shape == (cfg.sets * cfg.set_size, 3, cfg.input_size, cfg.input_size) and crops.dtype == torch.uint8
    assert labels.shape == (crops.shape[0],)
    assert int(labels.max()) < cfg.identities  # train ids are class labels 0..identities-1
    sets = labels.view(cfg.sets, cfg.set_size)
    assert (sets == sets[:, :1]).all()  # a set is one identity
    assert set(data["test"][1].tolist()).isdisjoint(labels.tolist())  # held-out identities


def test_training_improves_verification_over_an_untrained_net(tiny_data):
    cfg, data = tiny_data
    # verification on unseen renders of the training identities (the tiny analytic model has
    # too few identity modes for a 10-identity training set to generalise to new identities)
    model, report = train_idnet(cfg, log=None, data={"train": data["train"], "val": data["unseen"],
                                                      "test": data["unseen"]})
    before, after = report["verification_untrained"], report["verification"]
    assert report["epoch_losses"][-1] < report["epoch_losses"][0]
    assert after["auc"] > before["auc"] + 0.1
    assert after["accuracy"] > 0.65
    emb = model(torch.rand(2, 3, 64, 64))
    assert emb.shape == (2, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_margin_softmax_penalises_the_target_logit():
    head = MarginSoftmax(5, 8, "cosface", scale=10.0, margin=0.3)
    emb = torch.randn(4, 8)
    y = torch.tensor([0, 1, 2, 3])
    cos = torch.nn.functional.normalize(emb, dim=-1) @ torch.nn.functional.normalize(head.weight, dim=-1).T
    logits = head(emb, y)
    assert torch.allclose(logits[torch.arange(4), y], 10 * (cos[torch.arange(4), y] - 0.3), atol=1e-5)
    other = torch.ones_like(logits, dtype=torch.bool)
    other[torch.arange(4), y] = False
    assert torch.allclose(logits[other], 10 * cos[other], atol=1e-5)
    arc = MarginSoftmax(5, 8, "arcface", scale=10.0, margin=0.3)
    arc.weight.data.copy_(head.weight.data)
    la = arc(emb, y)[torch.arange(4), y]
    assert (la < 10 * cos[torch.arange(4), y]).all()


def test_verification_statistics_on_known_scores():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.1, 0.75])
    same = torch.tensor([True, True, True, False, False, False])
    assert roc_auc(scores, same) == pytest.approx(8 / 9)
    thr, acc = best_threshold(scores, same)
    assert acc == pytest.approx(5 / 6)  # best: accept >= 0.75 (3 TP, 2 TN of 3)
    assert 0.2 < thr < 0.7 or 0.7 <= thr < 0.8


def test_cache_roundtrip_and_keying(tmp_path, monkeypatch):
    monkeypatch.setenv("B3F_CACHE_DIR", str(tmp_path))
    cfg = IdNetConfig(**TINY)
    assert IdNetConfig(**{**TINY, "epochs": 9}).key() != cfg.key()
    assert idnet_cache_path(cfg).parent == tmp_path / "idnet"
    calls = []

    def fake_train(c, device="cpu", log=None):
        calls.append(c)
        return IdNet.from_config(c).eval(), {"config": c.to_dict(), "verification": {"accuracy": 0.9, "auc": 0.95},
                                              "verification_untrained": {"accuracy": 0.5, "auc": 0.5},
                                              "seconds_total": 0.0}

    monkeypatch.setattr(idnet_mod, "train_idnet", fake_train)
    m1, _, p1 = load_or_train_idnet(cfg, log=None)
    m2, rep, p2 = load_or_train_idnet(cfg, log=None)
    assert len(calls) == 1 and p1 == p2 and p1.is_file()  # trained once, then read from the cache
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert rep["config"]["epochs"] == TINY["epochs"]
    with pytest.raises(FileNotFoundError, match="b3f idnet train"):
        load_idnet(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError, match="not an IdNet file"):
        load_idnet(bad)


def test_cli_parser_and_info(tmp_path, monkeypatch, capsys):
    from benchmark3dface.perceptual import cli

    monkeypatch.setenv("B3F_CACHE_DIR", str(tmp_path))
    parser = argparse.ArgumentParser(prog="b3f")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["idnet", "train", "--epochs", "3", "--identities", "50", "--margin", "arcface"])
    cfg = cli._config(args)
    assert (cfg.epochs, cfg.identities, cfg.margin) == (3, 50, "arcface")
    args = parser.parse_args(["idnet", "info", "--epochs", "3"])
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "trained: False" in out and str(tmp_path) in out
    model = IdNet.from_config(cfg)
    save_idnet(model, {"config": cfg.to_dict(), "verification": {"accuracy": 0.8, "auc": 0.9},
                       "verification_untrained": {"accuracy": 0.5, "auc": 0.5}, "seconds_total": 1.0},
               idnet_cache_path(cli._config(args)))
    assert cli.run(args) == 0
    assert "trained: True" in capsys.readouterr().out
