"""Rankings that cannot be gamed by failing, and directions / units declared by the protocol.

* the issue's case: 6 samples through a real protocol (``TrueError``) and the store; a method
  that returns NaN vertices on its 2 hardest samples must rank below the same predictions
  without NaN, although its plain mean over the 4 samples it kept is lower;
* the penalty rule against a hand computation; ties on the score go to coverage;
* score and coverage in every export; the paired comparison reports each side's failures;
* a higher-is-better protocol whose names contain no known token ranks descending from its
  stored declaration alone; an old (version-2) store migrates and falls back to name guesses,
  saying so.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from sqlalchemy import MetaData, create_engine, insert

from benchmark3dface.data.sample import Sample
from benchmark3dface.leaderboard import ResultsStore, RunInfo, build_report, build_tables, compare_methods
from benchmark3dface.leaderboard import coerce_result
from benchmark3dface.leaderboard.directions import metric_direction
from benchmark3dface.leaderboard.export import to_csv, to_json, to_markdown
from benchmark3dface.leaderboard.migrations import apply_migrations
from benchmark3dface.leaderboard.records import StoredRun
from benchmark3dface.leaderboard.schema import SCHEMA_VERSION
from benchmark3dface.leaderboard.stats import CoverageScore, penalised_scores
from benchmark3dface.leaderboard.table import rank_runs
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import AFLW2000NME, ProtocolMetric, TrueError
from benchmark3dface.metrics.geometry import vertex_normals
from benchmark3dface.metrics.synthetic import face_surface, relief


# ----------------------------------------------------------------------------- the issue's case
def _evaluate(protocol: ProtocolMetric, recs: list[Reconstruction], samples: list[Sample]) -> Any:
    protocol.update(recs, samples)
    return protocol.compute()


@pytest.fixture(scope="module")
def issue_case() -> dict[str, Any]:
    """Six synthetic faces, predictions whose error grows with the sample; ``failing`` is the
    same predictions with NaN vertices on the two samples ``complete`` got worst."""
    rng = np.random.default_rng(5)
    gt = face_surface(14, seed=3)
    normals = vertex_normals(gt.vertices, gt.triangles)
    samples, preds = [], []
    for i in range(6):
        samples.append(Sample(sample_id=f"s{i}", vertices=gt.vertices))
        preds.append(gt.vertices + relief(gt.uv, rng, 0.4 + 0.5 * i)[:, None] * normals)
    complete = _evaluate(TrueError(), [Reconstruction(s.sample_id, [FaceReconstruction(p, gt.triangles)])
                                       for s, p in zip(samples, preds)], samples)
    errors = complete.per_sample["mean"]
    hardest = sorted(errors, key=errors.get)[-2:]
    failing_recs = []
    for s, p in zip(samples, preds):
        v = torch.full_like(p, math.nan) if s.sample_id in hardest else p
        failing_recs.append(Reconstruction(s.sample_id, [FaceReconstruction(v, gt.triangles)]))
    failing = _evaluate(TrueError(), failing_recs, samples)
    return {"complete": complete, "failing": failing, "hardest": sorted(hardest), "errors": errors}


@pytest.fixture
def issue_store(sqlite_url: str, issue_case: dict[str, Any]) -> ResultsStore:
    store = ResultsStore(sqlite_url)
    for method in ("failing", "complete"):  # the failing run is stored first: no id advantage
        store.record_run(RunInfo(method=method, dataset="synthetic", protocol="true_error"),
                         issue_case[method])
    yield store
    store.close()


def test_issue_case_premise(issue_case: dict[str, Any]) -> None:
    """Without the fix the failing method wins: its plain mean over 4 samples is lower."""
    c, f = issue_case["complete"].metrics["mean"], issue_case["failing"].metrics["mean"]
    assert (c.n, c.n_failed, f.n, f.n_failed) == (6, 0, 4, 2)
    assert f.value < c.value
    assert set(issue_case["failing"].failures) == set(issue_case["hardest"])
    assert all(r == "non-finite vertices" for r in issue_case["failing"].failures.values())


def test_failing_method_ranks_below_complete_one(issue_store: ResultsStore,
                                                 issue_case: dict[str, Any]) -> None:
    (table,) = build_tables(issue_store.runs(), store=issue_store)
    assert [(r.rank, r.run.method) for r in table.rows] == [(1, "complete"), (2, "failing")]
    assert table.ranked_on_score and table.score_metric == "mean" and table.n_total == 6
    complete, failing = table.rows
    assert (complete.score.n_scored, complete.score.n_total) == (6, 6)
    assert (failing.score.n_scored, failing.score.n_total) == (4, 6)
    # independent of the implementation: the complete run scores its plain mean over the six
    # samples; the failing run is charged, on its two failures, the only value anyone got there
    # (the complete run's), i.e. exactly the same per-sample numbers
    expected = float(np.mean(list(issue_case["errors"].values())))
    assert complete.score.score == pytest.approx(expected, rel=1e-12)
    assert failing.score.score == pytest.approx(expected, rel=1e-12)
    # the plain mean over the scored samples stays in the table, and favours the failing run
    assert failing.value("mean") < complete.value("mean")
    # the declared direction and unit came from the protocol, not from the name
    assert table.direction_sources["mean"] == "declared" and table.units["mean"] == "mm"
    # without per-sample values (no store) the table says it ranks on the plain mean
    (plain,) = build_tables(issue_store.runs())
    assert not plain.ranked_on_score and "plain mean" in plain.notes()[0]


def test_exports_show_score_and_coverage(issue_store: ResultsStore, tmp_path) -> None:
    tables = build_tables(issue_store.runs(), store=issue_store)
    md = to_markdown(tables)
    assert "| score \u2193 * | coverage |" in md and "| 6/6 |" in md and "| 4/6 |" in md
    assert "worst value any run of the table got on that sample" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(tables))))
    by_method = {r["method"]: r for r in rows if r["metric"] == "mean"}
    assert (by_method["failing"]["n_scored"], by_method["failing"]["n_total"]) == ("4", "6")
    assert by_method["failing"]["rank"] == "2" and by_method["complete"]["rank"] == "1"
    assert float(by_method["complete"]["coverage"]) == 1.0
    assert by_method["complete"]["unit"] == "mm" and by_method["complete"]["direction_source"] == "declared"
    doc = json.loads(to_json(tables))
    t = doc["tables"][0]
    assert t["ranking"]["score_metric"] == "mean" and t["ranking"]["n_total"] == 6
    assert [(r["method"], r["coverage"]["n_scored"]) for r in t["rows"]] == [("complete", 6), ("failing", 4)]
    assert t["rows"][0]["score"] == pytest.approx(t["rows"][1]["score"])
    html = build_report(issue_store, tables)
    assert '<th class="coverage"' in html and ">4/6</td>" in html and ">6/6</td>" in html
    assert "failed A" in html


def test_compare_uses_shared_samples_and_reports_failures(issue_store: ResultsStore,
                                                          issue_case: dict[str, Any]) -> None:
    (group,) = compare_methods(issue_store, "complete", "failing", metric="mean")
    (res,) = group.results
    assert res.n_shared == 4 and res.n_only_a == 2 and res.n_only_b == 0
    assert res.failed_a == () and list(res.failed_b) == issue_case["hardest"]
    assert res.mean_diff == pytest.approx(0.0, abs=1e-12)  # same predictions where both scored
    assert res.direction == "lower" and res.direction_source == "declared"
    assert res.as_dict()["n_failed_b"] == 2


def test_compare_cli_prints_failures(issue_store: ResultsStore, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from benchmark3dface.leaderboard.cli import add_parser

    parser = argparse.ArgumentParser(prog="b3f")
    add_parser(parser.add_subparsers(dest="command"))
    db = issue_store.url
    args = parser.parse_args(["leaderboard", "--db", db, "compare", "complete", "failing"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "failed A" in out and "failing failed 2 sample(s) of mean" in out


# ----------------------------------------------------------------------------- the penalty rule
def test_penalty_rule_by_hand() -> None:
    scored = {
        "A": (np.array(["s1", "s2", "s3"]), np.array([1.0, 2.0, 3.0])),   # failed s4
        "B": (np.array(["s1", "s2", "s4"]), np.array([2.0, 1.5, 6.0])),   # s3 missing
        "C": (np.array(["s1"]), np.array([4.0])),                         # failed s2, s5
    }
    failed = ["s4", "s2", "s5"]  # s5: nobody scored it
    # lower is better: worst per sample s1=4, s2=2, s3=3, s4=6; s5 -> worst of the table, 6;
    # and never better than the failing run's own worst value (A: 3, B: 6, C: 4)
    low = penalised_scores(scored, failed, direction="lower")
    assert low["A"].score == pytest.approx((1 + 2 + 3 + 6 + 6) / 5)
    assert low["B"].score == pytest.approx((2 + 1.5 + 6 + 6 + 6) / 5)
    assert low["C"].score == pytest.approx((4 + 4 + 4 + 6 + 6) / 5)
    assert [(low[k].n_scored, low[k].n_total) for k in "ABC"] == [(3, 5), (3, 5), (1, 5)]
    # higher is better: worst = smallest: s1=1, s2=1.5, s3=3, s4=6; s5 -> 1; own worst A 1, B 1.5, C 4
    high = penalised_scores(scored, failed, direction="higher")
    assert high["A"].score == pytest.approx((1 + 2 + 3 + 1 + 1) / 5)
    assert high["B"].score == pytest.approx((2 + 1.5 + 1.5 + 6 + 1) / 5)
    assert high["C"].score == pytest.approx((4 + 1.5 + 3 + 4 + 1) / 5)
    # a failure never scores better than any answer given on that sample, nor than the run's own
    # plain mean (a floor row scoring ~0 where everyone else failed cannot make failing pay)
    assert all(low[k].score >= 1.0 for k in "ABC")
    assert all(low[k].score >= float(scored[k][1].mean()) for k in "ABC")
    assert all(high[k].score <= float(scored[k][1].mean()) for k in "ABC")
    floor = penalised_scores({"oracle": (np.array(["a", "b"]), np.array([0.0, 0.0])),
                              "m": (np.array(["a"]), np.array([5.0]))}, ["b"])
    assert floor["m"].score == pytest.approx(5.0)  # not (5 + 0) / 2
    # nothing scored anywhere: no score, coverage still counted
    none = penalised_scores({"A": (np.array([], dtype=str), np.array([]))}, ["x", "y"])
    assert none["A"].score is None and none["A"].n_total == 2 and none["A"].coverage == 0.0
    with pytest.raises(ValueError, match="finite"):
        penalised_scores({"A": (np.array(["a"]), np.array([np.nan]))})
    with pytest.raises(ValueError, match="direction"):
        penalised_scores(scored, direction="up")  # type: ignore[arg-type]


def _run(i: int, method: str, value: float) -> StoredRun:
    from benchmark3dface.leaderboard.records import MetricValue

    return StoredRun(
        id=i, method=method, method_version="", config={}, config_hash=f"{i:064x}", seed=0,
        dataset="d", split="test", protocol="p", checkpoint=None, git_commit=None, hardware=None,
        started_at=None, ended_at=None, status="finished", status_reason=None, n_samples=0,
        metrics={"err": MetricValue(value, direction="lower")},
    )


def test_rank_on_score_then_coverage() -> None:
    runs = [_run(1, "gamer", 0.1), _run(2, "honest", 0.5), _run(3, "twin", 0.5), _run(4, "old", 0.2)]
    scores = {1: CoverageScore(3.0, 4, 6), 2: CoverageScore(3.0, 6, 6), 3: CoverageScore(3.0, 6, 6)}
    rows = rank_runs(runs, "err", "lower", scores=scores)
    # equal scores: full coverage first (and shares the rank), then the gamer; the run without
    # per-sample values comes after every scored run although its plain mean is lower
    assert [(r.rank, r.run.method) for r in rows] == [(1, "honest"), (1, "twin"), (3, "gamer"), (4, "old")]
    assert rows[3].score is None and rows[0].score == scores[2]


# ----------------------------------------------------------------------------- declared directions
class _Zeta(ProtocolMetric):
    """A test protocol: higher is better, and no name token the fallback table knows."""

    name: ClassVar[str] = "zeta"
    value_names: ClassVar[tuple[str, ...]] = ("quux",)
    units: ClassVar[dict[str, str]] = {"quux": "pt"}
    higher_is_better: ClassVar[bool] = True

    def update(self, values: dict[str, float]) -> None:
        self.record(list(values), [[v] for v in values.values()], [""] * len(values))


def test_declared_higher_is_better_ranks_descending(sqlite_url: str) -> None:
    assert metric_direction("quux") == "lower"  # a name guess would rank it the wrong way
    results = {}
    for method, values in (("small", [1.0, 2.0, 3.0]), ("large", [4.0, 5.0, 6.0])):
        proto = _Zeta()
        proto.update({f"s{i}": v for i, v in enumerate(values)})
        results[method] = proto.compute()
    m = results["large"].metrics["quux"]
    assert (m.direction, m.unit, m.sample_metric) == ("higher", "pt", "quux")
    with ResultsStore(sqlite_url) as store:
        for method in ("small", "large"):
            store.record_run(RunInfo(method=method, dataset="d", protocol="zeta"), results[method])
        stored = store.runs()[0].metrics["quux"]
        assert (stored.direction, stored.unit, stored.sample_metric) == ("higher", "pt", "quux")
        (table,) = build_tables(store.runs(), store=store)
        assert [r.run.method for r in table.rows] == ["large", "small"]
        assert table.directions["quux"] == "higher" and table.direction_sources["quux"] == "declared"
        assert table.label("quux") == "quux [pt] \u2191" and not table.guessed
        assert rank_runs(store.runs(), "quux", "higher")[0].run.method == "large"
        (group,) = compare_methods(store, "small", "large")
        assert group.results[0].better == "large" and group.results[0].direction == "higher"
        doc = json.loads(to_json([table]))
        assert doc["tables"][0]["metrics"] == [
            {"name": "quux", "direction": "higher", "unit": "pt", "direction_source": "declared"}]


def test_protocol_declarations() -> None:
    assert TrueError.direction_of("mean") == "lower" and TrueError.sample_metric_of("mean") == "mean"
    assert AFLW2000NME.sample_metric_of("nme_mean") == "nme"
    assert AFLW2000NME.sample_metric_of("nme_0_30") is None  # a bin summarises a subset
    assert AFLW2000NME.sample_metric_of("yaw_deg") is None  # optional, not a score
    assert _Zeta.direction_of("anything") == "higher"

    class _Bad(_Zeta):
        directions: ClassVar[dict[str, str]] = {"quux": "up"}  # type: ignore[assignment]

    with pytest.raises(ValueError, match="must be 'lower' or 'higher'"):
        _Bad.direction_of("quux")
    res = coerce_result({"metrics": {"x": {"value": 1.0, "direction": "higher", "unit": "%"}}})
    assert (res.metrics["x"].direction, res.metrics["x"].unit) == ("higher", "%")
    with pytest.raises(ValueError, match="direction must be"):
        coerce_result({"metrics": {"x": {"value": 1.0, "direction": "up"}}})


# ----------------------------------------------------------------------------- an old store
def test_v2_store_migrates_and_falls_back_to_name_guesses(store_url: str) -> None:
    engine = create_engine(store_url)
    with engine.begin() as conn:  # a version-2 store, as the version-2 migrations built it
        assert apply_migrations(conn, target=2) == [1, 2]
        md = MetaData()
        md.reflect(conn)
        runs, metrics, samples = (md.tables[n] for n in ("b3f_runs", "b3f_metrics", "b3f_sample_values"))
        per_sample = {"gamer": {"a": 1.0, "b": 1.0}, "honest": {"a": 1.0, "b": 1.0, "c": 3.0}}
        for method, values in per_sample.items():
            failed = {"c": "non-finite vertices"} if method == "gamer" else {}
            run_id = conn.execute(insert(runs).values(
                method=method, method_version="", config_json="{}", config_hash=method, seed=0,
                dataset="micc", split="test", protocol="micc", status="finished", n_metrics=1,
                n_samples=len(values) + len(failed))).inserted_primary_key[0]
            conn.execute(insert(metrics).values(run_id=run_id, name="rmse",
                                                value=float(np.mean(list(values.values()))),
                                                std=None, n=len(values), n_failed=len(failed)))
            conn.execute(insert(samples), [
                {"run_id": run_id, "metric": "rmse", "sample_id": k, "value": v, "failure_reason": None}
                for k, v in values.items()] + [
                {"run_id": run_id, "metric": "*", "sample_id": k, "value": None, "failure_reason": r}
                for k, r in failed.items()])
    engine.dispose()
    with ResultsStore(store_url, create=False) as store:
        assert store.schema_version == SCHEMA_VERSION >= 3
        assert store.check_integrity() == []
        old = store.runs()
        assert all(r.metrics["rmse"].direction is None and r.metrics["rmse"].unit is None for r in old)
        (table,) = build_tables(old, store=store)
        # no declaration stored: the direction is a name guess, and the table says so
        assert table.direction_sources["rmse"] == "guessed" and table.guessed == ["rmse"]
        assert table.label("rmse").endswith("\u2193?")
        assert any("guessed from the metric name" in n for n in table.notes())
        # the per-sample values of the same name still give the coverage-aware score:
        # gamer 1, 1 and c at 3 (honest's value) -> 5/3, ties honest on the score, loses on coverage
        assert [(r.rank, r.run.method) for r in table.rows] == [(1, "honest"), (2, "gamer")]
        assert table.rows[1].score.score == pytest.approx(5.0 / 3.0)
        # a new run with the protocol's declaration: the table now uses the declared direction
        store.record_run(RunInfo(method="new", dataset="micc", protocol="micc"),
                         {"metrics": {"rmse": {"value": 2.0, "n": 3, "direction": "lower", "unit": "mm",
                                               "sample_metric": "rmse"}},
                          "per_sample": {"rmse": {"a": 2.0, "b": 2.0, "c": 2.0}}})
        (table,) = build_tables(store.runs(), store=store)
        assert table.direction_sources["rmse"] == "declared" and table.units["rmse"] == "mm"
        assert [r.run.method for r in table.rows] == ["honest", "gamer", "new"]
        assert store.check_integrity() == []
