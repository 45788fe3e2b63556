"""Fixtures: the methods run on the tiny analytic face model (source name "tiny" patched into the
method base class's model loader) and its synthetic samples at 64 px, so the tests stay fast."""

from __future__ import annotations

import pytest

#: the options of tiny_batch (tests/conftest.py EASY_SYNTH), for samples the tests build themselves
EASY = {"yaw_max": 30.0, "occlusion_prob": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0}

SIZE = 64  # the image size of single_batch / set_batch (tests/conftest.py)


@pytest.fixture(autouse=True)
def _tiny_model_source(tiny_source):
    """Every test here may build methods with ``facemodel="tiny"`` (tests/conftest.py)."""

