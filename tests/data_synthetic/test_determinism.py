"""Determinism (seed/split/index -> same bytes) and identity splits."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from benchmark3dface.data.sample import Sample
from benchmark3dface.data.synthetic import (IDENTITY_OFFSETS, SPLITS, SynthConfig, derive_seed,
                                            identity_id, split_of_identity)


def assert_same_sample(a: Sample, b: Sample) -> None:
    for f in fields(Sample):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape, f.name
            # bit-identical, NaNs included
            assert x.numpy().tobytes() == y.numpy().tobytes(), f.name
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), f.name
            for k in x:
                if isinstance(x[k], torch.Tensor):
                    assert x[k].numpy().tobytes() == y[k].numpy().tobytes(), (f.name, k)
                else:
                    assert x[k] == y[k], (f.name, k)
        else:
            assert x == y, f.name


def test_same_seed_same_bytes_new_dataset(make_dataset):
    a = make_dataset(mode="set", set_size=2, image_size=48, occlusion_prob=0.5, seed=3)
    b = make_dataset(mode="set", set_size=2, image_size=48, occlusion_prob=0.5, seed=3)
    for i in (0, 5, 2):  # order does not matter
        assert_same_sample(a[i], b[i])
    c = make_dataset(mode="set", set_size=2, image_size=48, occlusion_prob=0.5, seed=4)
    assert not torch.equal(a[0].image, c[0].image)
    assert not torch.equal(a[0].image, a[1].image)


@pytest.mark.parametrize("cfg", [dict(mode="single", backgrounds=("faces", "noise")),
                                 dict(mode="multiface", image_size=128, max_faces=5),
                                 dict(mode="set", set_size=3), dict(mode="multiview")])
def test_batched_generation_equals_one_at_a_time(make_dataset, cfg):
    """``__getitems__`` (what DataLoader calls) decodes a batch's faces together: every sample
    must still be the one ``__getitem__`` gives, whatever it was batched with."""
    ds = make_dataset(size=12, **cfg)
    idx = [7, 0, 3, 3, 11, -1]
    batch = ds.__getitems__(idx)
    assert len(batch) == len(idx)
    for i, b in zip(idx, batch):
        assert_same_sample(ds[i], b)
    assert_same_sample(ds.__getitems__([3])[0], batch[2])
    with pytest.raises(IndexError, match="out of range"):
        ds.__getitems__([0, 12])


def test_thread_count_does_not_change_samples(make_dataset):
    ds = make_dataset(mode="multiface", image_size=128, max_faces=4)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [ds[i] for i in range(2)]
        torch.set_num_threads(2)
        two = [ds[i] for i in range(2)]
        assert torch.get_num_threads() == 2  # the engine restores the caller's setting
    finally:
        torch.set_num_threads(old)
    for x, y in zip(one, two):
        assert_same_sample(x, y)


def _as_list(batch):
    return batch


def test_dataloader_workers_do_not_change_samples(make_dataset):
    ds = make_dataset(mode="single", size=6, image_size=48, labelled_fraction=0.5)
    ref = [ds[i] for i in range(6)]
    got = []
    for batch in DataLoader(ds, batch_size=2, num_workers=2, collate_fn=_as_list):
        got.extend(batch)
    assert len(got) == 6
    for x, y in zip(ref, got):
        assert_same_sample(x, y)


def test_seed_hash_is_process_independent():
    """The per-sample seed is a content hash, not Python's salted hash()."""
    code = ("from benchmark3dface.data.synthetic.seeding import derive_seed;"
            "print(derive_seed('b3f-synth', 'scene', 7, 'val', 123))")
    outs = set()
    for salt in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=salt)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, check=True).stdout.strip())
    assert outs == {str(derive_seed("b3f-synth", "scene", 7, "val", 123))}


def test_identity_ids_are_disjoint_across_splits(make_dataset):
    ids = {}
    for split in SPLITS:
        ds = make_dataset(split=split, size=12, image_size=24, train_identities=5,
                          val_identities=5, test_identities=5)
        ids[split] = {ds[i].identity for i in range(12)}
        assert all(split_of_identity(i) == split for i in ids[split])
        assert all(IDENTITY_OFFSETS[split] <= i < IDENTITY_OFFSETS[split] + 5 for i in ids[split])
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert identity_id("train", 3) == 3
    with pytest.raises(ValueError):
        identity_id("holdout", 0)


def test_identity_maps_to_the_same_coefficients(make_dataset, tiny_model):
    lay = tiny_model.layout
    ds = make_dataset(size=40, image_size=24, train_identities=3)
    by_id = {}
    for i in range(40):
        s = ds[i]
        c = torch.cat([s.coeffs[lay.slice("id")], s.coeffs[lay.slice("tex")]])
        if s.identity in by_id:
            assert torch.equal(by_id[s.identity], c)
        by_id[s.identity] = c
    assert len(by_id) == 3
    vals = list(by_id.values())
    assert not torch.equal(vals[0], vals[1])


def test_unlabelled_samples_carry_only_image_and_detected_landmarks(make_dataset):
    unl = make_dataset(image_size=48, labelled_fraction=0.0, landmark_noise=0.01)
    lab = make_dataset(image_size=48, labelled_fraction=1.0)
    for i in range(3):
        u, g = unl[i], lab[i]
        assert u.labelled is False and g.labelled is True
        assert set(u.present()) == {"kind", "sample_id", "image", "lm68", "lm5", "identity",
                                    "camera", "meta", "labelled"}
        assert torch.equal(u.image, g.image)  # same scene, only the labels differ
        err = (u.lm68 - g.lm68).norm(dim=-1)
        assert 0 < err.mean() < 5.0


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="mode"):
        SynthConfig(mode="triple")
    with pytest.raises(ValueError, match="unknown synthetic config keys"):
        SynthConfig.from_dict({"yaw": 30})
    with pytest.raises(ValueError, match="weak_perspective"):
        SynthConfig(mode="multiface", projection="weak_perspective")
    cfg = SynthConfig.from_dict({"preset": "wm3dr", "max_faces": 3})
    assert cfg.mode == "multiface" and cfg.image_size == 512 and cfg.max_faces == 3
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    assert np.isclose(SynthConfig().views, 1)


_HASH_CODE = """
import hashlib, sys
from benchmark3dface.data.synthetic import SyntheticFaceDataset
from benchmark3dface.data.synthetic.testing import tiny_facemodel
ds = SyntheticFaceDataset({"mode": "multiface", "image_size": 96, "max_faces": 4}, "train", 3, 0, tiny_facemodel())
h = hashlib.sha256()
for i in range(3):
    s = ds[i]
    for k in ("image", "depth", "parse", "vertices", "vertices_cam", "lm68", "coeffs"):
        h.update(getattr(s, k).numpy().tobytes())
print(h.hexdigest())
"""


def test_other_cpu_code_paths_give_the_same_bytes():
    """Emulate other machines: MKL's SSE4.2 code path and ATen's generic kernels (instead of
    this CPU's AVX2/AVX-512 ones) must not change a bit (exact linear model, no BLAS in the
    image path)."""
    outs = set()
    for extra in ({}, {"MKL_CBWR": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"}):
        env = dict(os.environ, **extra)
        outs.add(subprocess.run([sys.executable, "-c", _HASH_CODE], env=env, capture_output=True,
                                text=True, check=True).stdout.strip())
    assert len(outs) == 1
