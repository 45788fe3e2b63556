"""SyntheticDataModule: every mode, workers, YAML construction, shards, a Lightning loop."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from benchmark3dface.data.datamodules import SampleBatch, SampleCollate, SyntheticDataModule, fill_partial
from benchmark3dface.data.sample import Sample


def _dm(model, **kw):
    kw.setdefault("image_size", 32)
    kw.setdefault("train_size", 4)
    kw.setdefault("val_size", 4)
    kw.setdefault("test_size", 2)
    kw.setdefault("batch_size", 2)
    return SyntheticDataModule(facemodel=model, **kw)


@pytest.mark.parametrize("mode,shape", [("single", (2, 3, 32, 32)), ("set", (2, 3, 3, 32, 32)),
                                        ("multiview", (2, 3, 3, 32, 32))])
def test_batches_have_the_mode_shapes(tiny_model, mode, shape):
    dm = _dm(tiny_model, mode=mode, options={"set_size": 3})
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, SampleBatch) and batch.kind == mode
    assert tuple(batch.image.shape) == shape
    v = shape[1:-3]
    assert tuple(batch.lm68.shape) == (2, *v, 68, 2)
    assert tuple(batch.depth.shape) == (2, *v, 32, 32)
    assert dm.kind == mode and "coeffs" in dm.provides


def test_multiface_batches_keep_variable_face_counts(tiny_model):
    dm = _dm(tiny_model, mode="multiface", image_size=96, batch_size=3,
             options={"min_faces": 1, "max_faces": 5})
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch.image.shape == (3, 3, 96, 96)
    counts = [m["face_count"] for m in batch.meta]
    for k, c in enumerate(counts):
        lm = batch.lm68[k] if isinstance(batch.lm68, list) else batch.lm68[k]
        assert lm.shape == (c, 68, 2) and batch.centers[k].shape == (c, 2)
    assert "centers" in dm.provides


def test_workers_give_the_same_batches(tiny_model):
    a = _dm(tiny_model, mode="set", options={"set_size": 2}, num_workers=0)
    b = _dm(tiny_model, mode="set", options={"set_size": 2}, num_workers=2)
    for dm in (a, b):
        dm.setup("validate")
    for x, y in zip(a.val_dataloader(), b.val_dataloader()):
        assert torch.equal(x.image, y.image) and torch.equal(x.coeffs, y.coeffs)
        assert x.sample_id == y.sample_id


def test_semi_supervised_batches_are_stacked_with_nan_fill(tiny_model):
    dm = _dm(tiny_model, batch_size=4, val_size=8, options={"labelled_fraction": 0.5})
    dm.setup("validate")
    seen = set()
    for batch in dm.val_dataloader():
        lab = batch.labelled
        assert lab.dtype == torch.bool
        assert isinstance(batch.coeffs, torch.Tensor) and batch.coeffs.shape[0] == 4
        assert torch.isnan(batch.coeffs[~lab]).all() and not torch.isnan(batch.coeffs[lab]).any()
        assert not torch.isnan(batch.lm68).any()  # detected-style landmarks for everyone
        seen.update(lab.tolist())
    assert seen == {True, False}
    raw = SampleCollate(fill_missing=False)([dm.datasets["val"][i] for i in range(8)])
    assert isinstance(raw.coeffs, list)


def test_fill_partial_rules():
    a = Sample(coeffs=torch.ones(3), occluded=True, lm68_visible=torch.ones(68, dtype=torch.bool))
    b = Sample(coeffs=None, occluded=None, lm68_visible=None)
    from benchmark3dface.data.collate import collate_samples

    batch = fill_partial(collate_samples([a, b]))
    assert batch.coeffs.shape == (2, 3) and math.isnan(batch.coeffs[1, 0])
    assert batch.occluded.tolist() == [True, False]
    assert batch.lm68_visible[1].sum() == 0


def test_yaml_builds_the_datamodule(tiny_model):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(SyntheticDataModule, "data")
    cfg = parser.parse_string(
        "data:\n  mode: multiview\n  image_size: 40\n  train_size: 3\n  batch_size: 3\n"
        "  num_workers: 0\n  options:\n    view_yaw: 45\n    occlusion_prob: 0.0\n")
    init = parser.instantiate_classes(cfg)
    dm = init.data
    assert isinstance(dm, SyntheticDataModule)
    assert dm.config.mode == "multiview" and dm.config.view_yaw == 45 and dm.config.image_size == 40
    assert dm.sizes["train"] == 3
    with pytest.raises(ValueError, match="unknown synthetic config keys"):
        SyntheticDataModule(options={"yaww": 3})


def test_shards_feed_the_datamodule(tmp_path, tiny_model):
    from benchmark3dface.data.synthetic import write_shards

    cfg = {"mode": "single", "image_size": 32}
    for split in ("train", "val"):
        write_shards(tmp_path / split, cfg, split=split, num_samples=4, seed=0,
                     facemodel=tiny_model, progress=False)
    disk = _dm(tiny_model, shards=str(tmp_path), test_size=0)
    live = _dm(tiny_model, test_size=0)
    disk.setup("fit")
    live.setup("fit")
    assert type(disk.datasets["val"]).__name__ == "ShardDataset"
    for x, y in zip(disk.val_dataloader(), live.val_dataloader()):
        assert torch.equal(x.image, y.image) and torch.equal(x.parse, y.parse)
        assert torch.equal(torch.nan_to_num(x.depth), torch.nan_to_num(y.depth))
    with pytest.raises(ValueError, match="shards hold"):
        _dm(tiny_model, mode="set", shards=str(tmp_path)).setup("fit")


class _Tiny(L.LightningModule):
    """Consumes SampleBatch batches: a linear map of the image means to the GT coefficients."""

    def __init__(self, ncoef: int):
        super().__init__()
        self.lin = torch.nn.Linear(3, ncoef)
        self.seen = 0

    def training_step(self, batch, idx):
        assert isinstance(batch, SampleBatch)
        self.seen += len(batch)
        pred = self.lin(batch.image.mean((-1, -2)))
        return (pred - batch.coeffs).square().mean()

    def validation_step(self, batch, idx):
        self.log("val_loss", self.lin(batch.image.mean((-1, -2))).square().mean(), batch_size=len(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_trainer_runs_on_the_datamodule(tiny_model):
    dm = _dm(tiny_model, train_size=6, val_size=2, batch_size=2)
    model = _Tiny(tiny_model.layout.size)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert model.seen == 6


def test_sample_batch_pins_and_moves_nested_tensors(tiny_model, monkeypatch):
    dm = _dm(tiny_model, mode="multiface", image_size=64, batch_size=2, options={"max_faces": 3})
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    pinned = []

    def fake_pin(self):
        pinned.append(tuple(self.shape))
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    n_tensors = sum(isinstance(getattr(batch, f), torch.Tensor) for f in ("image", "depth", "parse"))
    out = batch.pin_memory()
    assert out is batch and len(pinned) >= n_tensors + 2 * 2  # + per-image lists and meta maps
    assert (64, 64) in pinned  # meta["instance_map"] inside the list of dicts
    frozen = object()
    batch.meta[0]["transform"] = frozen
    moved = batch.to("cpu")
    assert isinstance(moved, SampleBatch) and moved.meta[0]["transform"] is frozen
    assert torch.equal(moved.image, batch.image)
