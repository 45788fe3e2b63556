"""The instruments of benchmarks/facenets.py (the script itself needs the weights and minutes):
the difference, timing and verification functions, the perturbed-copy geometry, and the
section table."""


import numpy as np
import pytest



@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("facenets")


def test_max_abs_diff_is_zero_on_identical_inputs_and_the_true_max_otherwise(bench):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 128)).astype(np.float32)
    assert bench.max_abs_diff(a, a.copy()) == 0.0
    b = a.astype(np.float64).copy()
    b[2, 17] += 0.37
    b[0, 3] -= 0.11
    assert bench.max_abs_diff(a, b) == pytest.approx(0.37, abs=1e-12)
    assert bench.max_abs_diff(b, a) == pytest.approx(0.37, abs=1e-12)
    with pytest.raises(ValueError, match="shapes differ"):
        bench.max_abs_diff(a, a[:3])


def test_verification_summary_on_hand_made_scores(bench):
    s = bench.verification_summary([0.9, 0.8, 0.95], [0.5, 0.85, 0.1, 0.2])
    assert s["same_mean"] == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    assert s["same_min"] == 0.8 and s["diff_max"] == 0.85
    assert s["diff_mean"] == pytest.approx(0.4125)
    # no threshold separates 0.8 (same) from 0.85 (different): best is 6 of 7 right
    assert s["best_threshold_accuracy"] == pytest.approx(6 / 7)
    assert bench.verification_summary([0.9], [0.1])["best_threshold_accuracy"] == 1.0


def test_ms_per_image_counts_calls(bench):
    calls = []
    ms = bench.ms_per_image(calls.append, [1, 2, 3, 4], repeats=2)
    assert len(calls) == 8 and ms >= 0.0


def test_perturbed_copy_moves_the_points_with_the_pixels(bench):
    img = np.zeros((100, 120, 3), np.uint8)
    lm5 = np.array([[30.5, 40.5], [80.5, 40.5], [55.5, 60.5], [35.5, 80.5], [75.5, 80.5]])
    img[40, 30] = 255  # the pixel whose centre is the left eye (30.5, 40.5)
    out, pts = bench.perturbed_copy(img, lm5, scale=0.5, quality=95)
    assert out.shape == (50, 60, 3)
    # mirrored: the bright pixel is now the right eye (index 1 after the swap) at (120-30.5)*0.5
    assert pts[1] == pytest.approx([(120 - 30.5) * 0.5, 40.5 * 0.5])
    r, c = np.unravel_index(out.sum(2).argmax(), out.shape[:2])
    assert abs((c + 0.5) - pts[1][0]) <= 1.0 and abs((r + 0.5) - pts[1][1]) <= 1.0


def test_every_section_is_a_callable_and_unknown_sections_are_refused(bench, capsys):
    assert "dlib_resnet" in bench.SECTIONS and all(callable(f) for f in bench.SECTIONS.values())
    assert bench.main(["--only", "nope"]) == 2
    assert "unknown section" in capsys.readouterr().err
