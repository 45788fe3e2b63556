"""The metric-fidelity table from stored runs, and fitting the terminal table to its width."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from benchmark3dface.leaderboard import ResultsStore, RunInfo
from benchmark3dface.leaderboard.fidelity import fidelity_html, fidelity_rows
from benchmark3dface.leaderboard.table import build_tables, render


def _result(ids, values, key):
    return {"metrics": {key: {"value": float(np.mean(values)), "n": len(values)}},
            "per_sample": {key: dict(zip(ids, map(float, values)))}}


def _record(store, method, protocol, ids, values, key):
    info = RunInfo(method=method, dataset="synthetic-single@128", protocol=protocol, split="test",
                   config={"m": method}, seed=0)
    store.record_run(info, _result(ids, values, key))


def test_fidelity_rows_correlate_estimates_with_true_error(sqlite_url: str) -> None:
    store = ResultsStore(sqlite_url)
    rng = np.random.default_rng(0)
    ids = [f"s{i:03d}" for i in range(60)]
    truth = rng.uniform(2.0, 6.0, 60)
    # "good" tracks the truth closely, "noisy" barely, the oracle sits at the floor
    _record(store, "good", "true_error", ids, truth, "mean")
    _record(store, "good", "micc", ids, truth * 0.8 + rng.normal(0, 0.05, 60), "rmse")
    _record(store, "noisy", "true_error", ids, truth, "mean")
    _record(store, "noisy", "micc", ids, rng.uniform(2.0, 6.0, 60), "rmse")
    _record(store, "oracle", "true_error", ids, np.full(60, 1e-6) + rng.uniform(0, 1e-7, 60), "mean")
    _record(store, "oracle", "micc", ids, rng.uniform(0, 1e-6, 60), "rmse")
    rows = {(r.protocol, r.method): r for r in fidelity_rows(store, store.runs())}
    assert rows[("micc", "good")].pearson > 0.99 and rows[("micc", "good")].n == 60
    assert abs(rows[("micc", "noisy")].pearson) < 0.4
    pooled = rows[("micc", "(pooled)")]
    assert pooled.n == 120  # the oracle (a floor) is not pooled
    assert rows[("micc", "noisy")].pearson < pooled.pearson < rows[("micc", "good")].pearson
    assert ("true_error", "good") not in rows
    html = fidelity_html(list(rows.values()))
    assert "Metric fidelity" in html and "(pooled)" in html


def test_narrow_terminal_keeps_ranking_metric_and_says_what_is_hidden(sqlite_url: str) -> None:
    store = ResultsStore(sqlite_url)
    metrics = {f"metric_{k}": {"value": float(k), "n": 3} for k in range(8)}
    store.record_run(RunInfo(method="m", dataset="d", protocol="p", split="test", config={}, seed=0),
                     {"metrics": metrics})
    tables = build_tables(store.runs())
    narrow, wide = Console(width=80, record=True), Console(width=400, record=True)
    render(tables, narrow)
    render(tables, wide)
    text_n, text_w = narrow.export_text(), wide.export_text()
    assert "metric_0" in text_n and "more metric(s)" in text_n
    assert "metric_7" not in text_n and "config" not in text_n
    assert "metric_7" in text_w and "config" in text_w and "more metric(s)" not in text_w
