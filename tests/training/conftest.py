"""Fixtures of the training-infrastructure tests: the tiny analytic face model patched in as
the source name "tiny" (see training_helpers.py, shared with the DDP worker script)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from training_helpers import install_tiny_facemodel


@pytest.fixture(scope="module")
def tiny_fm():
    fm, undo = install_tiny_facemodel()
    yield fm
    undo()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a shared CPU two threads
    contending with other processes make each step several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
