"""Fixtures: DF-MVR on the tiny analytic face model (source "tiny" patched into the method base
class's loader) and its clean synthetic triplets (no noise, no occluders), so the tests stay fast."""

from __future__ import annotations

import pytest

from benchmark3dface.data.collate import collate_samples
from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset

SIZE = 48
CLEAN = {"occlusion_prob": 0.0, "noise_max": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0}
#: a small network for the tests (reduced widths, RedNet-26)
SMALL = {"widths": (8, 16), "fused_channels": 8, "depth": 26, "reg_width": 8, "group_channels": 8}


@pytest.fixture(autouse=True)
def _tiny_model_source(tiny_source):
    """Every test here may build methods with ``facemodel="tiny"`` (tests/conftest.py)."""


@pytest.fixture(scope="session")
def triplets(tiny_fm):
    ds = SyntheticFaceDataset({"mode": "multiview", "image_size": SIZE, **CLEAN}, split="train", size=4,
                              facemodel=tiny_fm)
    return collate_samples([ds[i] for i in range(2)])
