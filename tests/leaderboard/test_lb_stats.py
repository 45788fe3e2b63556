"""CED curves, CED AUC and the paired Wilcoxon test against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from benchmark3dface.leaderboard.stats import ced_auc, ced_curve, paired_test


def test_ced_curve_matches_counting() -> None:
    rng = np.random.default_rng(0)
    values = rng.gamma(3.0, 1.0, 200)
    thresholds = np.linspace(0, 10, 57)
    got = ced_curve(values, n_failed=13, thresholds=thresholds)
    expected = [sum(v <= t for v in values) / 213 for t in thresholds]  # plain loop reference
    np.testing.assert_allclose(got, expected)
    assert got[-1] < 1.0  # failures keep the curve below 1
    assert np.all(np.diff(got) >= 0)


def test_ced_curve_rejects_nan_and_empty() -> None:
    with pytest.raises(ValueError, match="finite"):
        ced_curve(np.array([1.0, np.nan]), 0, np.array([1.0]))
    with pytest.raises(ValueError, match="zero samples"):
        ced_curve(np.array([]), 0, np.array([1.0]))


def test_ced_auc_equals_integral_of_curve() -> None:
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 9, 300)
    t_max = 7.0
    grid = np.linspace(0, t_max, 200001)
    numeric = integrate.trapezoid(ced_curve(values, 20, grid), grid) / t_max
    assert ced_auc(values, 20, t_max) == pytest.approx(numeric, abs=1e-4)
    assert ced_auc(np.zeros(5), 0, 1.0) == 1.0


def test_paired_test_pairs_by_id_and_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    ids = np.array([f"s{i}" for i in range(120)])
    a = rng.gamma(4, 1.0, 120)
    b = a + rng.normal(0.3, 0.5, 120)  # B is worse (higher error)
    # shuffle B and drop some samples from each side: pairing must go by id
    perm = rng.permutation(120)[:100]
    ids_b, vals_b = ids[perm], b[perm]
    ids_a, vals_a = ids[5:], a[5:]
    res = paired_test(ids_a, vals_a, ids_b, vals_b, label_a="x", label_b="y", metric="nme")
    shared = sorted(set(ids_a) & set(ids_b))
    da = dict(zip(ids_a, vals_a))
    db = dict(zip(ids_b, vals_b))
    ref = stats.wilcoxon([da[s] for s in shared], [db[s] for s in shared])
    assert res.n_shared == len(shared)
    assert res.n_only_a == len(ids_a) - len(shared) and res.n_only_b == len(ids_b) - len(shared)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.mean_diff == pytest.approx(np.mean([da[s] - db[s] for s in shared]))
    assert res.better == "x" and res.significant
    flipped = paired_test(ids_a, vals_a, ids_b, vals_b, direction="higher", label_a="x", label_b="y")
    assert flipped.better == "y"


def test_paired_test_edge_cases() -> None:
    same = paired_test(["a", "b"], [1.0, 2.0], ["b", "a"], [2.0, 1.0])
    assert (same.p_value, same.better, same.significant) == (1.0, None, False)
    none = paired_test(["a"], [1.0], ["b"], [1.0])
    assert none.n_shared == 0 and none.p_value is None and none.better is None
    with pytest.raises(ValueError, match="one id per value"):
        paired_test(["a", "b"], [1.0], ["a"], [1.0])
