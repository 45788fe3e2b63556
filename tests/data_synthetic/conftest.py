"""Fixtures for the synthetic-engine tests: a tiny analytic face model (fast, always there)."""

from __future__ import annotations

import pytest

from benchmark3dface.data.synthetic.testing import tiny_facemodel


@pytest.fixture(scope="session")
def tiny_model():
    return tiny_facemodel()


@pytest.fixture(scope="session")
def make_dataset(tiny_model):
    from benchmark3dface.data.synthetic import SyntheticFaceDataset

    def make(split: str = "train", size: int = 8, seed: int = 0, **cfg):
        cfg.setdefault("image_size", 64)
        return SyntheticFaceDataset(cfg, split, size, seed, tiny_model)

    return make
