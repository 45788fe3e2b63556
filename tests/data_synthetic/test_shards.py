"""Shards on disk (write_shards / b3f synth) read back as identical samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark3dface.data.synthetic import ShardDataset, SyntheticFaceDataset, write_shards
from benchmark3dface.data.readers.errors import MissingFileError


def _assert_same(a, b):
    from dataclasses import fields

    from benchmark3dface.data.sample import Sample

    for f in fields(Sample):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.numpy().tobytes() == y.numpy().tobytes(), f.name
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), f.name
            for k in x:
                if isinstance(x[k], torch.Tensor):
                    assert torch.equal(x[k], y[k]), k
                else:
                    assert x[k] == y[k], k
        else:
            assert x == y, f.name


@pytest.mark.parametrize("mode,store", [("set", False), ("multiface", False), ("single", True)])
def test_shards_read_back_identical(tmp_path, tiny_model, mode, store):
    cfg = {"mode": mode, "image_size": 48 if mode == "set" else 128, "set_size": 2, "max_faces": 3,
           "labelled_fraction": 0.5}
    out = tmp_path / mode
    write_shards(out, cfg, split="val", num_samples=5, seed=7, facemodel=tiny_model, shard_size=2,
                 workers=0, progress=False, store_vertices=store)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == "val" and manifest["num_samples"] == 5 and len(manifest["shards"]) == 3
    assert manifest["config"]["mode"] == mode
    assert ("00000/vertices" in __import__("numpy").load(out / "shard_00000.npz").files) == store
    if not store:
        with pytest.raises(ValueError, match="custom face model"):
            ShardDataset(out)[0]
    back = ShardDataset(out, facemodel=tiny_model)
    assert len(back) == 5 and back.config.mode == mode
    ref = SyntheticFaceDataset(back.config, "val", 5, 7, tiny_model)
    for i in range(5):
        _assert_same(back[i], ref[i])


def test_cli_writes_shards_with_workers(tmp_path, tiny_model, monkeypatch):
    import benchmark3dface.data.synthetic.dataset as dsmod
    from benchmark3dface.cli.main import main

    monkeypatch.setattr(dsmod, "resolve_facemodel", lambda *a, **k: tiny_model)
    out = tmp_path / "cli"
    rc = main(["synth", "--mode", "single", "-n", "6", "--out", str(out), "--seed", "1",
               "--split", "test", "--image-size", "40", "--workers", "2", "--shard-size", "4",
               "--set", "occlusion_prob=0.5", "--no-progress"])
    assert rc == 0
    back = ShardDataset(out, facemodel=tiny_model)
    assert back.config.occlusion_prob == 0.5 and back.split == "test"
    ref = SyntheticFaceDataset(back.config, "test", 6, 1, tiny_model)
    for i in range(6):
        _assert_same(back[i], ref[i])
    assert sorted(p.name for p in (out / "shard_00000").iterdir())[:2] == ["00000000.png", "00000001.png"]
    with pytest.raises(FileExistsError):
        main(["synth", "-n", "1", "--out", str(out), "--no-progress"])


def test_missing_manifest_and_files_are_named(tmp_path, tiny_model):
    with pytest.raises(MissingFileError, match="manifest"):
        ShardDataset(tmp_path)
    write_shards(tmp_path / "d", {"image_size": 32}, num_samples=2, facemodel=tiny_model,
                 progress=False)
    (tmp_path / "d" / "shard_00000.npz").unlink()
    ds = ShardDataset(tmp_path / "d", facemodel=tiny_model)
    with pytest.raises(MissingFileError, match="shard_00000.npz"):
        ds[0]


def test_jpeg_shards_keep_labels(tmp_path, tiny_model):
    write_shards(tmp_path, {"image_size": 48}, num_samples=2, facemodel=tiny_model,
                 image_format="jpg", progress=False)
    back, ref = ShardDataset(tmp_path, facemodel=tiny_model), SyntheticFaceDataset({"image_size": 48}, "train", 2, 0, tiny_model)
    a, b = back[1], ref[1]
    assert torch.equal(a.lm68, b.lm68) and torch.equal(a.parse, b.parse)
    assert (a.image - b.image).abs().mean() < 0.05
    assert Path(tmp_path / "shard_00000" / "00000000.jpg").is_file()
