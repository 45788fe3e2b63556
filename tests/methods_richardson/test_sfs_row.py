"""``coarse_sfs``: CoarseNet + the per-image Eq. 14 optimisation as a training-free row of the
depth board; its coarse settings come from the coarsenet checkpoint it is given."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.methods.registry import get_method


def test_registered_as_a_training_free_depth_row():
    cls = get_method("coarse_sfs")
    assert not cls.spec.trainable and cls.spec.eval_kinds == ("single_weak",)
    assert cls.spec.checkpoint_args == {"coarse_checkpoint": "coarsenet"} and cls.spec.inputs == ("image",)
    assert "depth" in cls.spec.outputs


def _coarse_ckpt(tmp_path, **hp):
    from b3f_methods.richardson import CoarseNet

    torch.manual_seed(1)
    net = CoarseNet(**hp)
    with torch.no_grad():  # a non-trivial update, so that the coarse weights visibly travel
        net.net.get_classifier().bias.normal_(0, 0.05)
    path = tmp_path / "coarse.ckpt"
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": dict(net.hparams)}, path)
    return net, path


def test_takes_the_coarse_settings_and_weights_from_the_checkpoint(tmp_path, weak_batch):
    from b3f_methods.richardson import CoarseSfS

    net, path = _coarse_ckpt(tmp_path, image_size=64, iterations=2, feedback="pncc")
    row = CoarseSfS(coarse_checkpoint=str(path), optimize_steps=5)
    assert (row.hparams.image_size, row.hparams.iterations, row.hparams.feedback) == (64, 2, "pncc")
    assert row.hparams.refine == "optimize"
    its_net, its_row = net.iterate(weak_batch.image), row.iterate(weak_batch.image)
    assert len(its_row) == 3 and all(torch.equal(a, b) for a, b in zip(its_net, its_row))
    recs = row.reconstruct(weak_batch)
    face, coarse = recs[0].faces[0], recs[0].extras["coarse_depth"]
    ok = coarse.isfinite()
    assert torch.equal(face.depth.isfinite(), ok) and ok.any()
    assert (face.depth[ok] - coarse[ok]).abs().max() > 1e-3  # the optimisation moved the depth


def test_an_unreadable_coarse_checkpoint_is_one_clear_error(tmp_path):
    from b3f_methods.richardson import CoarseSfS

    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.ckpt"):
        CoarseSfS(coarse_checkpoint=str(bad))
