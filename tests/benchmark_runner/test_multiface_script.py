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


def test_time_images_measures_each_image_and_counts_faces(script):
    import time

    class Slow:  # a stub whose time grows with the face count, as detect-then-regress's does
        def reconstruct(self, batch):
            from benchmark3dface.methods import Reconstruction

            time.sleep(0.02 * batch)
            return [Reconstruction("x", [object()] * batch)]

    times, found = script.time_images(Slow(), [1, 3], lambda b: b[0])
    assert found == [1, 3]
    assert 0.02 <= times[0] < 0.05 and 0.06 <= times[1] < 0.1


def test_wm3dr_oracle_maps_decode_exactly_the_gt_faces(script):
    from b3f_methods.wm3dr import WM3DR

    from benchmark3dface.data.datamodules import SampleCollate

    model = WM3DR(backbone="resnet18", width=16).eval()
    oracle = script.OracleMaps(model)
    for s in script.multiface_images(3, 1, 128):
        oracle.sample = s
        rec = model.reconstruct(SampleCollate(fill_missing=True)([s]))[0]
        assert len(rec.faces) == 3
        got = sorted(tuple(round(float(v), 2) for v in f.center) for f in rec.faces)
        want = sorted(tuple(round(float(v), 2) for v in c) for c in s.centers)
        assert got == want
