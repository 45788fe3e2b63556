"""Pure statistics for the leaderboard: the coverage-aware ranking score, CED curves and
paired tests on per-sample errors.

Values are in the protocol's units (millimetres for geometric errors, NME as the protocol
defines it). Failed samples count as *never* within any threshold in a CED curve, so a curve
of a method that fails on 10 % of the samples plateaus at 0.9; in the ranking score they
count at a penalty (:func:`penalised_scores`), so failing never helps a method's rank.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import stats as _stats

from ..results import ced_fractions as ced_curve  # the one CED computation (re-exported here)
from .directions import Direction

K = TypeVar("K", bound=Hashable)

#: The penalty rule in words (tables, exports and docs quote it).
PENALTY_RULE = (
    "a failed or missing sample counts at the worst value any run of the table got on that "
    "sample (the worst value of the table when no run scored it), and never better than the "
    "failing run's own worst scored value; equal scores rank by coverage"
)


@dataclass(frozen=True)
class CoverageScore:
    """The ranking score of one run in a table.

    ``score``: the mean of the run's per-sample values over all ``n_total`` samples of the
    table, failed or missing ones at their penalty (None when no run of the table scored any
    sample); ``n_scored``: samples the run scored itself.
    """

    score: float | None
    n_scored: int
    n_total: int

    @property
    def n_penalised(self) -> int:
        return self.n_total - self.n_scored

    @property
    def coverage(self) -> float:
        """``n_scored / n_total`` in [0, 1] (0 for an empty table)."""
        return self.n_scored / self.n_total if self.n_total else 0.0


def penalised_scores(
    scored: Mapping[K, tuple[np.ndarray, np.ndarray]],
    failed: Iterable[str] = (),
    *,
    direction: Direction = "lower",
) -> dict[K, CoverageScore]:
    """Score every run on the same samples: the union ``U`` of the sample ids any run scored
    (``scored[run] = (ids, values)``, finite values, unique ids per run) and the ids in
    ``failed`` (samples some run failed). A run's score is the mean over ``U`` of its own
    value where it scored the sample, else the sample's *penalty*: the worst value (max when
    lower is better, min when higher is better) that any run got on it, or the worst value
    of all runs on all samples when no run scored it -- and never better than the failing run's
    own worst scored value (when only a floor row such as the oracle scored a sample, its
    near-zero value would otherwise make failing there pay).

    So a failure never scores better than the worst answer any run gave on that sample, nor
    than the run's own worst answer: a run's score is never below its plain mean over the
    samples it scored, and a run that fails where the others answered cannot outrank the same
    answers without the failures (the scores tie at best; rank on coverage next). Every run is
    averaged over the same samples, in the same order.
    """
    if direction not in ("lower", "higher"):
        raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}")
    runs = list(scored)
    clean: dict[K, tuple[np.ndarray, np.ndarray]] = {}
    for run in runs:
        ids, values = scored[run]
        ids = np.asarray(ids).astype(str).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if ids.shape != values.shape:
            raise ValueError(f"run {run!r}: {ids.shape[0]} sample ids but {values.shape[0]} values")
        if not np.isfinite(values).all():
            raise ValueError(f"run {run!r}: per-sample values must be finite (failures are failures)")
        if np.unique(ids).shape[0] != ids.shape[0]:
            raise ValueError(f"run {run!r}: duplicate sample ids")
        clean[run] = (ids, values)
    failed_ids = np.asarray([str(s) for s in failed], dtype=str).reshape(-1)
    universe = np.unique(np.concatenate([failed_ids] + [ids for ids, _ in clean.values()]))
    n_total = int(universe.shape[0])
    lower = direction == "lower"
    worst = np.full(n_total, np.nan)
    index: dict[K, np.ndarray] = {}
    for run, (ids, values) in clean.items():
        idx = np.searchsorted(universe, ids)
        index[run] = idx
        if lower:
            np.fmax.at(worst, idx, values)
        else:
            np.fmin.at(worst, idx, values)
    nobody = np.isnan(worst)
    if nobody.all():
        return {run: CoverageScore(None, int(clean[run][0].shape[0]), n_total) for run in runs}
    worst[nobody] = np.nanmax(worst) if lower else np.nanmin(worst)
    out: dict[K, CoverageScore] = {}
    for run, (ids, values) in clean.items():
        own_worst = (values.max() if lower else values.min()) if values.size else None
        filled = worst.copy()
        if own_worst is not None:
            filled = np.fmax(filled, own_worst) if lower else np.fmin(filled, own_worst)
        filled[index[run]] = values
        out[run] = CoverageScore(float(filled.mean()), int(ids.shape[0]), n_total)
    return out


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
    samples); ``significant`` says whether ``p_value < alpha``. The test uses only the shared
    samples; ``failed_a`` / ``failed_b`` are the sample ids each side failed (sorted), so a
    side that won the shared samples by failing the hard ones shows it.
    ``direction_source``: ``declared`` (by the protocol), ``override`` or ``guessed`` (from
    the metric name, for runs recorded without a declaration).
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
    failed_a: tuple[str, ...] = ()
    failed_b: tuple[str, ...] = ()
    direction_source: str = "declared"

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha

    @property
    def n_failed_a(self) -> int:
        return len(self.failed_a)

    @property
    def n_failed_b(self) -> int:
        return len(self.failed_b)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["failed_a"], out["failed_b"] = list(self.failed_a), list(self.failed_b)
        out["n_failed_a"], out["n_failed_b"] = self.n_failed_a, self.n_failed_b
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
    failed_a: Iterable[str] = (),
    failed_b: Iterable[str] = (),
    direction_source: str = "declared",
) -> PairedComparison:
    """Pair two runs' per-sample values by sample id and run ``scipy.stats.wilcoxon`` on the
    differences (two-sided, zero differences dropped).

    Ids must be unique within each run. With no shared sample every statistic is None; when
    every difference is zero the test is skipped and ``p_value`` is 1. ``failed_a`` /
    ``failed_b``: the samples each run failed, reported with the result (not tested).
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
        failed_a=tuple(sorted({str(s) for s in failed_a})),
        failed_b=tuple(sorted({str(s) for s in failed_b})), direction_source=direction_source,
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
