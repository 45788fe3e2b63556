"""Pure statistics for the leaderboard: CED curves and paired tests on per-sample errors.

Values are in the protocol's units (millimetres for geometric errors, NME as the protocol
defines it). Failed samples count as *never* within any threshold in a CED curve, so a curve
of a method that fails on 10 % of the samples plateaus at 0.9.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

from .directions import Direction


def ced_curve(values: np.ndarray, n_failed: int, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: for each threshold ``t`` the fraction of *all* samples
    (``len(values) + n_failed``) whose error is ``<= t``.

    ``values``: (N,) finite errors; ``thresholds``: (T,) increasing. Returns (T,) in [0, 1].
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if n_failed < 0:
        raise ValueError(f"n_failed must be >= 0, got {n_failed}")
    if not np.isfinite(values).all():
        raise ValueError("CED values must be finite (record failures as failures, not NaN)")
    n_total = values.size + int(n_failed)
    if n_total == 0:
        raise ValueError("CED curve of zero samples")
    return np.searchsorted(np.sort(values), thresholds, side="right") / n_total


def ced_auc(values: np.ndarray, n_failed: int, max_threshold: float) -> float:
    """Area under the CED curve on ``[0, max_threshold]`` divided by ``max_threshold``
    (in [0, 1], higher is better; failed samples contribute 0).

    Closed form for non-negative errors: ``mean_i(1 - min(v_i, T) / T)`` over all samples.
    """
    if not max_threshold > 0:
        raise ValueError(f"max_threshold must be > 0, got {max_threshold}")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if (values < 0).any():
        raise ValueError("ced_auc expects non-negative errors")
    n_total = values.size + int(n_failed)
    if n_total == 0:
        raise ValueError("CED AUC of zero samples")
    return float(np.sum(1.0 - np.minimum(values, max_threshold) / max_threshold) / n_total)


@dataclass(frozen=True)
class PairedComparison:
    """Wilcoxon signed-rank test of ``a - b`` on the samples both runs evaluated.

    ``mean_diff`` / ``median_diff`` are of ``a - b`` in the metric's units. ``better`` is the
    label of the run with the better mean under ``direction`` (None on a tie or with no shared
    samples); ``significant`` says whether ``p_value < alpha``.
    """

    metric: str
    label_a: str
    label_b: str
    direction: Direction
    n_shared: int
    n_only_a: int
    n_only_b: int
    mean_a: float | None
    mean_b: float | None
    mean_diff: float | None
    median_diff: float | None
    statistic: float | None
    p_value: float | None
    better: str | None
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha

    def as_dict(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["significant"] = self.significant
        return out


def paired_test(
    ids_a: np.ndarray,
    values_a: np.ndarray,
    ids_b: np.ndarray,
    values_b: np.ndarray,
    *,
    direction: Direction = "lower",
    alpha: float = 0.05,
    label_a: str = "A",
    label_b: str = "B",
    metric: str = "",
) -> PairedComparison:
    """Pair two runs' per-sample values by sample id and run ``scipy.stats.wilcoxon`` on the
    differences (two-sided, zero differences dropped).

    Ids must be unique within each run. With no shared sample every statistic is None; when
    every difference is zero the test is skipped and ``p_value`` is 1.
    """
    ids_a = np.asarray(ids_a).astype(str)
    ids_b = np.asarray(ids_b).astype(str)
    values_a = np.asarray(values_a, dtype=np.float64).reshape(-1)
    values_b = np.asarray(values_b, dtype=np.float64).reshape(-1)
    if ids_a.shape[0] != values_a.shape[0] or ids_b.shape[0] != values_b.shape[0]:
        raise ValueError("paired_test: each run needs one id per value")
    if direction not in ("lower", "higher"):
        raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}")
    _, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    n = int(ia.shape[0])
    common = dict(
        metric=metric, label_a=label_a, label_b=label_b, direction=direction, n_shared=n,
        n_only_a=int(ids_a.shape[0]) - n, n_only_b=int(ids_b.shape[0]) - n, alpha=alpha,
    )
    if n == 0:
        return PairedComparison(
            **common, mean_a=None, mean_b=None, mean_diff=None, median_diff=None,
            statistic=None, p_value=None, better=None,
        )
    a, b = values_a[ia], values_b[ib]
    diff = a - b
    if not np.any(diff != 0):
        statistic, p_value = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small-n approximations warn; the p-value stands
            res = _stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
        statistic, p_value = float(res.statistic), float(res.pvalue)
    mean_diff = float(diff.mean())
    sign = mean_diff if direction == "lower" else -mean_diff
    better = None if sign == 0 else (label_a if sign < 0 else label_b)
    return PairedComparison(
        **common, mean_a=float(a.mean()), mean_b=float(b.mean()), mean_diff=mean_diff,
        median_diff=float(np.median(diff)), statistic=statistic, p_value=p_value, better=better,
    )
