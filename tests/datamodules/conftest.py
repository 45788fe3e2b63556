from __future__ import annotations

import pytest

from benchmark3dface.data.synthetic.testing import tiny_facemodel


@pytest.fixture(scope="session")
def tiny_model():
    return tiny_facemodel()
