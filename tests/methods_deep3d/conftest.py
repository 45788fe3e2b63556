"""Fixtures: the methods run on the tiny analytic face model (source name "tiny" patched into the
method base class's model loader) and its synthetic samples at 64 px, so the tests stay fast."""

from __future__ import annotations

import pytest

from benchmark3dface.data.collate import collate_samples
from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset
from benchmark3dface.data.synthetic.testing import tiny_facemodel

SIZE = 64
EASY = {"yaw_max": 30.0, "occlusion_prob": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0}


@pytest.fixture(scope="session")
def tiny_fm():
    return tiny_facemodel()


@pytest.fixture(autouse=True)
def tiny_source(monkeypatch, tiny_fm):
    import benchmark3dface.methods.base as base

    real = base.load_facemodel

    def load(source="procedural", path=None, **kw):
        return tiny_fm if source == "tiny" else real(source, path, **kw)

    monkeypatch.setattr(base, "load_facemodel", load)


@pytest.fixture(scope="session")
def single_batch(tiny_fm):
    ds = SyntheticFaceDataset({"mode": "single", "image_size": SIZE, **EASY}, split="train", size=8, facemodel=tiny_fm)
    return collate_samples([ds[i] for i in range(4)])


@pytest.fixture(scope="session")
def set_batch(tiny_fm):
    ds = SyntheticFaceDataset({"mode": "set", "set_size": 3, "image_size": SIZE, **EASY}, split="train", size=4,
                              facemodel=tiny_fm)
    return collate_samples([ds[i] for i in range(2)])
