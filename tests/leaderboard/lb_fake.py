"""Synthetic protocol results for the leaderboard tests (plain dicts, as a protocol gives)."""

from __future__ import annotations

from typing import Any

import numpy as np

YAW_BINS = ((0, 30), (30, 60), (60, 90))


def fake_result(
    rng: np.random.Generator,
    n_samples: int,
    scale: float,
    *,
    fail_rate: float = 0.0,
    metric: str = "nme",
    yaw_bins: bool = True,
    id_prefix: str = "img",
) -> dict[str, Any]:
    """A run result: per-sample errors ~ scale * Gamma(4, 1/4) * (1 + |yaw| / 90), a fraction
    of failed samples, the mean/std metric and (optionally) ``<metric>_<lo>_<hi>`` yaw bins."""
    ids = np.array([f"{id_prefix}{i:05d}" for i in range(n_samples)])
    yaw = np.random.default_rng(12345).uniform(0, 90, n_samples)  # same yaw for every run
    err = rng.gamma(4.0, scale / 4.0, n_samples) * (1.0 + yaw / 90.0)
    failed = rng.random(n_samples) < fail_rate
    ok = ~failed
    metrics: dict[str, Any] = {
        metric: {"value": float(err[ok].mean()), "std": float(err[ok].std()),
                 "n": int(ok.sum()), "n_failed": int(failed.sum())},
    }
    if yaw_bins:
        for lo, hi in YAW_BINS:
            sel = ok & (yaw >= lo) & (yaw < hi)
            metrics[f"{metric}_{lo}_{hi}"] = {"value": float(err[sel].mean()),
                                              "std": float(err[sel].std()), "n": int(sel.sum())}
    return {
        "metrics": metrics,
        "per_sample": {metric: {str(i): float(e) for i, e, o in zip(ids, err, ok) if o}},
        "failures": {str(i): "no face detected" for i in ids[failed]},
    }
