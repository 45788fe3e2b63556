"""Per-yaw-bin boards: the bins, the stored yaw, the penalised per-bin scores (known answers
worked out by hand), old runs without yaw, and every output (terminal, md, csv, json, html)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch

from benchmark3dface.evaluation.yaw import attach_sample_yaw, unit_yaws
from benchmark3dface.leaderboard import ResultsStore, RunInfo
from benchmark3dface.leaderboard.cli import add_parser
from benchmark3dface.leaderboard.table import build_tables
from benchmark3dface.leaderboard.yawbins import yaw_bin_table
from benchmark3dface.results import MetricValue, ProtocolResult, yaw_bin_index

SCORE = {"mean": {"value": 0.0, "direction": "lower", "unit": "mm", "sample_metric": "err"}}


def test_bin_edges_follow_3ddfa() -> None:
    assert [yaw_bin_index(d) for d in (0.0, 29.9, 30.0, 30.01, 60.0, 60.5, 90.0, 97.0)] == [0, 0, 0, 1, 1, 2, 2, 2]
    assert yaw_bin_index(-45.0) == 1  # |yaw|
    assert yaw_bin_index(math.nan) is None and yaw_bin_index(None) is None


def test_unit_yaws_per_sample_view_face() -> None:
    assert unit_yaws("a", torch.tensor(math.radians(-40.0))) == pytest.approx({"a": 40.0})
    got = unit_yaws("s", torch.tensor([math.radians(-30.0), 0.0, math.radians(60.0)]))
    assert got == pytest.approx({"s#v0": 30.0, "s#0": 30.0, "s#v1": 0.0, "s#1": 0.0, "s#v2": 60.0, "s#2": 60.0,
                                 "s": 30.0})  # the whole set: mean |yaw| of its views
    assert unit_yaws("x", None) == {}
    res = {"p": ProtocolResult("p", {"m": MetricValue(1.0)}, {"m": {"s#v0": 1.0}}, {"s#v2": "boom"})}
    attach_sample_yaw(res, got)
    assert res["p"].sample_yaw == pytest.approx({"s#v0": 30.0, "s#v2": 60.0})
    # the field survives the dict round trip
    assert ProtocolResult.from_dict(res["p"].to_dict()).sample_yaw == res["p"].sample_yaw


def _record(store: ResultsStore, method: str, values: dict[str, float], failures: dict[str, str],
            yaw: dict[str, float] | None) -> None:
    result = {"metrics": {"mean": dict(SCORE["mean"], value=sum(values.values()) / len(values))},
              "per_sample": {"err": values}, "failures": failures}
    if yaw is not None:
        result["sample_yaw"] = yaw
    store.record_run(RunInfo(method=method, dataset="synthetic-single", protocol="true_error"), result)


YAW = {"s1": 10.0, "s2": 20.0, "s3": 40.0, "s4": 70.0, "s5": 80.0}


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "lb.sqlite"
    with ResultsStore(path) as store:
        # A fails s5 (bin 60-90) and the unreadable s6 (no yaw: in no bin)
        _record(store, "A", {"s1": 1.0, "s2": 3.0, "s3": 2.0, "s4": 5.0},
                {"s5": "face not detected", "s6": "unreadable"}, dict(YAW))
        _record(store, "B", {"s1": 2.0, "s2": 2.0, "s3": 4.0, "s4": 4.0, "s5": 6.0}, {}, dict(YAW))
        # an old run recorded without yaws: its samples take the yaw the other runs recorded
        _record(store, "C", {"s1": 1.0, "s2": 1.0, "s3": 1.0, "s4": 1.0, "s5": 1.0}, {}, None)
    return str(path)


def test_per_bin_scores_known_answers(db: str) -> None:
    with ResultsStore(db) as store:
        assert store.sample_values_of_runs([1], "err")[1].yaw == YAW  # stored per row, failures included
        (table,) = build_tables(store.runs(), store=store)
        yt = yaw_bin_table(store, table)
    assert yt is not None and yt.bins == ("0-30", "30-60", "60-90")
    assert yt.n_per_bin == (2, 1, 2) and yt.n_unknown == 1
    a, b, c = (yt.cells[next(r.run.id for r in yt.rows if r.run.method == m)] for m in "ABC")
    # bin 0-30 {s1, s2}: A (1+3)/2, B (2+2)/2, C 1
    assert [x.score for x in (a[0], b[0], c[0])] == pytest.approx([2.0, 2.0, 1.0])
    # bin 30-60 {s3}
    assert [x.score for x in (a[1], b[1], c[1])] == pytest.approx([2.0, 4.0, 1.0])
    # bin 60-90 {s4, s5}: A's failed s5 at the worst value any run got there (B's 6): (5+6)/2;
    # its plain mean over what it scored stays 5, and it is penalised, never helped
    assert a[2].score == pytest.approx(5.5) and a[2].mean == pytest.approx(5.0)
    assert (a[2].n_scored, a[2].n_failed, a[2].n_total) == (1, 1, 2)
    assert b[2].score == pytest.approx(5.0) and c[2].score == pytest.approx(1.0)
    assert a[2].score > b[2].score  # the failure costs A the bin B wins on the scored sample


def test_old_store_without_yaw_has_no_bins(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "old.sqlite") as store:
        _record(store, "C", {"s1": 1.0}, {}, None)
        (table,) = build_tables(store.runs(), store=store)
        assert yaw_bin_table(store, table) is None


def _b3f(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="b3f")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_and_exports(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _b3f(["leaderboard", "--db", db]) == 0
    assert "by |yaw|" not in capsys.readouterr().out
    assert _b3f(["leaderboard", "--db", db, "--by", "yaw"]) == 0
    out = capsys.readouterr().out
    assert "synthetic-single / test / true_error by |yaw|" in out and "5.5 (1/2)" in out
    assert _b3f(["leaderboard", "--db", db, "--export", "md"]) == 0
    md = capsys.readouterr().out
    assert "by |yaw|" in md and "| 5.5 (1/2) |" in md
    assert _b3f(["leaderboard", "--db", db, "--export", "csv", "--by", "yaw"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 9  # 3 runs x 3 bins
    row = next(r for r in rows if r["method"] == "A" and r["yaw_bin"] == "60-90")
    assert float(row["score"]) == pytest.approx(5.5) and row["n_failed"] == "1"
    assert _b3f(["leaderboard", "--db", db, "--export", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (yb,) = doc["yaw_bins"]
    assert yb["n_per_bin"] == [2, 1, 2] and yb["n_unknown_yaw"] == 1
    a = next(r for r in yb["rows"] if r["method"] == "A")
    assert a["bins"]["0-30"]["score"] == pytest.approx(2.0)
    html = tmp_path / "r.html"
    assert _b3f(["leaderboard", "--db", db, "--export", "html", "--out", str(html)]) == 0
    text = html.read_text()
    assert "Per |yaw| bin" in text and "5.5 (1/2)" in text
