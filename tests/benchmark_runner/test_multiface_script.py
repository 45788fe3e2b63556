"""The instruments of benchmarks/multiface.py: the face-count control really yields k faces,
the count parser, and the timing arithmetic (means, per-face time, T(k) / T(1))."""

from __future__ import annotations


import pytest



@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("multiface")


def test_face_count_control_yields_exactly_k_faces(script):
    for k in (1, 4):
        samples = script.multiface_images(k, 2, 256)
        assert [script.face_count(s) for s in samples] == [k, k]
        assert all(s.centers.shape == (k, 2) for s in samples)


def test_parse_counts(script):
    assert script.parse_counts("1-3,8") == [1, 2, 3, 8]
    assert script.parse_counts("2, 2,1") == [1, 2]
    for bad in ("0-2", "3-1", ""):
        with pytest.raises(ValueError):
            script.parse_counts(bad)


def test_timing_arithmetic(script):
    rows = script.summarise({1: [1.0, 3.0], 4: [6.0, 10.0, 8.0]}, {1: [1, 1], 4: [4, 3, 5]},
                            {1: [1, 1], 4: [4, 4, 3]})
    one, four = rows
    assert one["seconds_mean"] == 2.0 and one["ratio"] == 1.0 and one["seconds_per_found_face"] == 2.0
    assert four["seconds_mean"] == 8.0 and four["seconds_median"] == 8.0
    assert four["ratio"] == 4.0 and four["found_per_image"] == 4.0 and abs(four["gt_per_image"] - 11 / 3) < 1e-12
    assert four["seconds_per_found_face"] == 24.0 / 12
