"""Fixtures of the fitting tests: the tiny analytic model (fast algorithm tests) and the
embedded procedural model (end-to-end)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the synthetic.py helper beside this file


@pytest.fixture(scope="session")
def tiny_model():
    from benchmark3dface.data.synthetic.testing import tiny_facemodel

    return tiny_facemodel()


@pytest.fixture(scope="session")
def procedural_model():
    from benchmark3dface.facemodel import load_facemodel

    return load_facemodel("procedural")
