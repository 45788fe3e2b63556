"""Ranking (direction-aware, best run per method) and the md / csv / json exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import numpy as np
import pytest

from benchmark3dface.leaderboard import ResultsStore, RunInfo
from benchmark3dface.leaderboard.export import CSV_COLUMNS, to_csv, to_json, to_markdown
from benchmark3dface.leaderboard.records import MetricValue, StoredRun
from benchmark3dface.leaderboard.table import build_tables, rank_runs, yaw_bin_groups

from lb_fake import fake_result

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _run(i: int, method: str, metrics: dict[str, float | None], *, dataset: str = "d",
         protocol: str = "p", minutes: int = 0) -> StoredRun:
    return StoredRun(
        id=i, method=method, method_version="", config={}, config_hash=f"{i:064x}", seed=i,
        dataset=dataset, split="test", protocol=protocol, checkpoint=None, git_commit=None,
        hardware=None, started_at=T0, ended_at=T0 + dt.timedelta(minutes=minutes),
        status="finished", status_reason=None, n_samples=0,
        metrics={k: MetricValue(v) for k, v in metrics.items()},
    )


def test_rank_lower_is_better_best_run_per_method() -> None:
    runs = [_run(1, "a", {"nme": 3.0}), _run(2, "a", {"nme": 2.5}), _run(3, "b", {"nme": 2.8}),
            _run(4, "c", {"nme": None}), _run(5, "d", {"nme": 2.8})]
    rows = rank_runs(runs, "nme", "lower")
    assert [(r.rank, r.run.id) for r in rows] == [(1, 2), (2, 3), (2, 5), (4, 4)]
    all_rows = rank_runs(runs, "nme", "lower", best_only=False)
    assert [r.run.id for r in all_rows] == [2, 3, 5, 1, 4]


def test_rank_higher_is_better_and_ties_prefer_recent() -> None:
    runs = [_run(1, "a", {"auc": 0.5}, minutes=1), _run(2, "a", {"auc": 0.7}, minutes=2),
            _run(3, "a", {"auc": 0.7}, minutes=9), _run(4, "b", {"auc": 0.6})]
    rows = rank_runs(runs, "auc", "higher")
    assert [r.run.id for r in rows] == [3, 4]


def test_build_tables_groups_and_primary_metric() -> None:
    runs = [_run(1, "a", {"nme": 3.0, "auc_0_7": 0.4}), _run(2, "b", {"nme": 3.5, "auc_0_7": 0.6}),
            _run(3, "a", {"rmse": 1.7}, dataset="micc", protocol="rmse")]
    tables = build_tables(runs)
    assert [(t.dataset, t.primary_metric) for t in tables] == [("d", "nme"), ("micc", "rmse")]
    assert [r.run.method for r in tables[0].rows] == ["a", "b"]
    by_auc = build_tables(runs, metric="auc_0_7")
    assert len(by_auc) == 1 and [r.run.method for r in by_auc[0].rows] == ["b", "a"]
    assert by_auc[0].metrics == ["auc_0_7", "nme"]
    assert by_auc[0].best_value("nme") == 3.0 and by_auc[0].best_value("auc_0_7") == 0.6
    with pytest.raises(ValueError, match="no run has the metric 'psnr'"):
        build_tables(runs, metric="psnr")


def test_yaw_bin_groups() -> None:
    names = ["nme", "nme_60_90", "nme_0_30", "nme_30_60", "rmse_0_30", "auc_0_7", "auc_0_10"]
    groups = yaw_bin_groups(names)
    assert groups["nme"] == [("nme_0_30", 0, 30), ("nme_30_60", 30, 60), ("nme_60_90", 60, 90)]
    assert "rmse" not in groups  # one bin is not a breakdown


@pytest.fixture
def populated(sqlite_url: str) -> ResultsStore:
    rng = np.random.default_rng(3)
    store = ResultsStore(sqlite_url)
    for method, scale in (("deep3d", 2.0), ("prnet", 2.4), ("3ddfa", 3.2)):
        for seed in range(2):
            store.record_run(
                RunInfo(method=method, dataset="aflw2000-3d", protocol="nme68", seed=seed,
                        config={"m": method}, method_version="1.0"),
                fake_result(rng, 80, scale, fail_rate=0.05))
    store.record_run(RunInfo(method="deep3d", dataset="micc", protocol="rmse"),
                     {"metrics": {"rmse": {"value": 1.66, "std": 0.3, "n": 53}}})
    yield store
    store.close()


def test_exports_agree_with_store(populated: ResultsStore) -> None:
    tables = build_tables(populated.runs())
    stored = {r.id: r for r in populated.runs()}
    # CSV: tidy rows carry exactly the stored values of the ranked runs
    rows = list(csv.DictReader(io.StringIO(to_csv(tables))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    ranked_ids = {row.run.id for t in tables for row in t.rows}
    assert {int(r["run_id"]) for r in rows} == ranked_ids
    for r in rows:
        assert float(r["value"]) == stored[int(r["run_id"])].metrics[r["metric"]].value
    nme_rows = sorted((int(r["rank"]), float(r["value"])) for r in rows if r["metric"] == "nme")
    assert [v for _, v in nme_rows] == sorted(v for _, v in nme_rows)  # rank follows NME
    # JSON
    doc = json.loads(to_json(tables, meta={"x": 1}))
    assert doc["meta"] == {"x": 1}
    t0 = doc["tables"][0]
    assert (t0["dataset"], t0["primary_metric"]) == ("aflw2000-3d", "nme")
    assert {m["name"]: m["direction"] for m in t0["metrics"]}["nme_0_30"] == "lower"
    for row in t0["rows"]:
        run = stored[row["run_id"]]
        assert row["metrics"]["nme"]["value"] == run.metrics["nme"].value
        assert row["config_hash"] == run.config_hash and row["method"] == run.method
    # Markdown: one section per table, one line per ranked run
    md = to_markdown(tables)
    assert md.count("### ") == 2 and "### micc / test / rmse" in md
    body = [line for line in md.splitlines() if line.startswith("| ") and "method" not in line]
    assert len(body) == len(ranked_ids)
    best = tables[0].rows[0].run
    assert f"| 1 | {best.method} |" in md
    assert f"{best.metrics['nme'].value:.4g}" in md
    assert to_markdown([]).startswith("_No finished runs")
