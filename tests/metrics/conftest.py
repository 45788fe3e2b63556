"""Protocol tests run many tiny torch ops; one intra-op thread avoids thread wake-up costs
(restored after each test so other test folders keep their setting)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
