"""Shared test helpers: where the read-only test data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("B3F_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"test data {p} is absent (the read-only ../shared/data folder beside the project)")
    return p


@pytest.fixture(scope="session")
def shared_data():
    return shared_path
