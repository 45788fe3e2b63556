"""The torch ports against the ORIGINAL tfjs runtimes: outputs stored by
tests/fixtures/facenets/make_golden_tfjs.js on synthetic inputs both sides regenerate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark3dface.facenets.golden import SIZES, compare_with_golden, golden_pattern, pattern_checksums

from .conftest import need_weights

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "facenets" / "golden_tfjs.json"


def test_fixture_is_small_and_inputs_match_the_generator():
    assert FIXTURE.stat().st_size <= 80_000  # with dlib_golden.npz the folder stays under 200 KB
    data = json.loads(FIXTURE.read_text())
    assert data["runtime"]["backend"] == "cpu" and set(data["networks"]) == set(SIZES)
    for name, entry in data["networks"].items():
        assert entry["size"] == SIZES[name]
        for case in entry["cases"]:
            img = golden_pattern(entry["size"], case["variant"])
            assert img.dtype == np.uint8 and img.shape == (entry["size"],) * 2 + (3,)
            assert list(pattern_checksums(img)) == case["checksums"]


@pytest.mark.parametrize("name", sorted(SIZES))
def test_torch_port_matches_tfjs(name):
    need_weights(name)
    from benchmark3dface.facenets.golden import load_nets

    diffs = compare_with_golden(FIXTURE, load_nets([name]))[name]
    print(f"\n{name}: max |torch - tfjs| {diffs}")
    assert diffs and max(diffs.values()) <= 1e-4
