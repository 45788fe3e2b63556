"""Fixtures: WM3DR on the tiny analytic face model (source name "tiny" patched into the method
base class's model loader) and its synthetic multi-face images, so the tests stay fast."""

from __future__ import annotations

import pytest

from benchmark3dface.data.collate import collate_samples
from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset

EASY = {"yaw_max": 30.0, "occlusion_prob": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0}
SMALL = {"backbone": "resnet18", "width": 16, "facemodel": "tiny"}


@pytest.fixture(autouse=True)
def _tiny_model_source(tiny_source):
    """Every test here may build methods with ``facemodel="tiny"`` (tests/conftest.py)."""


def multiface_samples(fm, n: int, size: int, lo: int, hi: int, seed: int = 0, split: str = "train"):
    ds = SyntheticFaceDataset({"mode": "multiface", "image_size": size, "min_faces": lo, "max_faces": hi,
                               "face_scale_range": (40.0, 90.0), **EASY}, split=split, size=n, seed=seed,
                              facemodel=fm)
    return [ds[i] for i in range(n)]


@pytest.fixture(scope="session")
def multiface_batch(tiny_fm):
    return collate_samples(multiface_samples(tiny_fm, 3, 128, 2, 4))


@pytest.fixture(scope="session")
def single_batch(tiny_fm):
    ds = SyntheticFaceDataset({"mode": "single", "image_size": 64, **EASY}, split="train", size=4, facemodel=tiny_fm)
    return collate_samples([ds[i] for i in range(4)])
