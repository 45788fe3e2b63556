"""Metric fidelity: how well a protocol's per-sample estimate tracks the true error.

On synthetic data, where ``TrueError`` is known, the Pearson and Spearman correlations across
samples between a protocol's per-sample value (e.g. MICC RMSE, NoW mean) and the true error
say how trustworthy the protocol is as an error estimator (M3DFB found ICP-only estimators as
low as 0.41, non-rigid alignment above 0.90).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .result import ProtocolResult

#: the per-sample value a protocol is judged by, when not given explicitly
DEFAULT_KEYS = {"micc": "rmse", "now": "mean", "now_metrical": "mean", "true_error": "mean",
                "aflw2000_nme": "nme", "aflw2000_dense_nme": "nme", "depth": "mean"}


@dataclass
class Fidelity:
    """Correlation of one protocol's per-sample estimate with the true error."""

    protocol: str
    key: str
    pearson: float
    spearman: float
    n: int


def _values(res: ProtocolResult | Mapping[str, float], key: str | None) -> tuple[str, Mapping[str, float]]:
    if isinstance(res, ProtocolResult):
        k = key or DEFAULT_KEYS.get(res.protocol) or next(iter(res.per_sample))
        if k not in res.per_sample:
            raise KeyError(f"protocol {res.protocol!r} has no per-sample value {k!r} (has {sorted(res.per_sample)})")
        return k, res.per_sample[k]
    return key or "value", res


def metric_fidelity(estimate: ProtocolResult | Mapping[str, float], truth: ProtocolResult | Mapping[str, float],
                    estimate_key: str | None = None, truth_key: str | None = None, name: str | None = None
                    ) -> Fidelity:
    """Pearson and Spearman correlation over the sample ids both results scored (NaN with
    fewer than 3 common samples or a constant series)."""
    k, est = _values(estimate, estimate_key)
    _, tru = _values(truth, truth_key)
    common = sorted(set(est) & set(tru))
    a = np.array([est[i] for i in common], dtype=np.float64)
    b = np.array([tru[i] for i in common], dtype=np.float64)
    proto = name or (estimate.protocol if isinstance(estimate, ProtocolResult) else "estimate")
    if len(common) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return Fidelity(proto, k, math.nan, math.nan, len(common))
    return Fidelity(proto, k, float(stats.pearsonr(a, b)[0]), float(stats.spearmanr(a, b)[0]), len(common))


def fidelity_report(results: Mapping[str, ProtocolResult], truth: ProtocolResult,
                    keys: Mapping[str, str] | None = None) -> list[Fidelity]:
    """One ``Fidelity`` per protocol result (``keys`` picks the per-sample value by name)."""
    keys = keys or {}
    return [metric_fidelity(r, truth, keys.get(name), None, name) for name, r in results.items()]


def format_fidelity(rows: list[Fidelity]) -> str:
    """Markdown table of a fidelity report."""
    lines = ["| protocol | value | Pearson | Spearman | n |", "|---|---|---|---|---|"]
    lines += [f"| {r.protocol} | {r.key} | {r.pearson:.3f} | {r.spearman:.3f} | {r.n} |" for r in rows]
    return "\n".join(lines)
