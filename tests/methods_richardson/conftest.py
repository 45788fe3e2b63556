"""Fixtures: weak-perspective grayscale synthetic samples of the embedded procedural model
(96 px), generated once per session; with fine detail beyond the model's span where the
refinement is tested."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.data.datamodules import SyntheticDataModule

SIZE = 96
WEAK = {"projection": "weak_perspective", "grayscale": True}


def _batch(n: int, **options):
    dm = SyntheticDataModule(mode="single", image_size=SIZE, train_size=0, val_size=0, test_size=n, batch_size=n,
                             options={**WEAK, **options})
    dm.setup("test")
    return next(iter(dm.test_dataloader()))


@pytest.fixture(scope="session")
def weak_batch():
    return _batch(4)


@pytest.fixture(scope="session")
def detail_batch():
    return _batch(12, detail_amplitude=3.0)


@pytest.fixture(scope="session")
def coarsenet():
    from b3f_methods.richardson import CoarseNet

    torch.manual_seed(0)
    return CoarseNet(image_size=SIZE, backbone="resnet10t")
