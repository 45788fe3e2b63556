"""``b3f leaderboard`` through ``add_parser`` / ``run`` (as the b3f entry point wires it)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark3dface.leaderboard import ResultsStore, RunInfo
from benchmark3dface.leaderboard.cli import add_parser, run

from lb_fake import fake_result


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="b3f")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return parser.parse_args(argv)


def _b3f(argv: list[str]) -> int:
    args = _parse(argv)
    assert args.func is run
    return args.func(args)


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "lb.sqlite"
    rng = np.random.default_rng(11)
    with ResultsStore(path) as store:
        for method, scale in (("deep3d", 2.0), ("prnet", 2.6), ("3ddfa", 3.4)):
            for seed in range(2):
                store.record_run(
                    RunInfo(method=method, dataset="aflw2000-3d", protocol="nme68", seed=seed,
                            config={"m": method}),
                    fake_result(rng, 100, scale + 0.3 * seed, fail_rate=0.03))
        store.record_run(RunInfo(method="deep3d", dataset="micc", protocol="rmse"),
                         {"metrics": {"rmse": {"value": 1.66, "std": 0.3, "n": 53}}})
    return str(path)


def test_table_with_filters(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _b3f(["leaderboard", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "aflw2000-3d / test / nme68" in out and "micc / test / rmse" in out
    lines = [line for line in out.splitlines() if "deep3d" in line or "3ddfa" in line]
    assert len(lines) == 3  # best run per method: deep3d twice (two groups), 3ddfa once
    assert _b3f(["leaderboard", "--db", db, "--dataset", "micc"]) == 0
    out = capsys.readouterr().out
    assert "micc" in out and "aflw2000" not in out
    assert _b3f(["leaderboard", "--db", db, "--method", "prnet", "--all-runs"]) == 0
    out = capsys.readouterr().out
    assert out.count("prnet") == 2 and "deep3d" not in out
    assert _b3f(["leaderboard", "--db", db, "--dataset", "nowhere"]) == 1
    assert "no finished runs" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "html"])
def test_exports_to_file(db: str, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "sub" / f"board.{fmt}"
    assert _b3f(["leaderboard", "--db", db, "--protocol", "nme68", "--export", fmt,
                 "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    with ResultsStore(db) as store:
        best = min(store.runs(protocol="nme68"), key=lambda r: r.metrics["nme"].value)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        first = [r for r in rows if r["rank"] == "1" and r["metric"] == "nme"]
        assert [int(r["run_id"]) for r in first] == [best.id]
        assert {r["protocol"] for r in rows} == {"nme68"}
    elif fmt == "json":
        doc = json.loads(text)
        assert doc["tables"][0]["rows"][0]["run_id"] == best.id
        assert doc["meta"]["filters"]["protocol"] == "nme68"
    elif fmt == "md":
        assert f"| 1 | {best.method} |" in text and "micc" not in text
    else:
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "micc" not in text


def test_export_to_stdout_and_argument_errors(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _b3f(["leaderboard", "--db", db, "--export", "md"]) == 0
    assert "### aflw2000-3d / test / nme68" in capsys.readouterr().out
    assert _b3f(["leaderboard", "--db", db, "--export", "html"]) == 1
    assert "needs --out" in capsys.readouterr().err
    assert _b3f(["leaderboard", "--db", db, "--metric", "psnr"]) == 1
    assert "no run has the metric 'psnr'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse(["leaderboard", "--export", "pdf"])


def test_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.sqlite"
    assert _b3f(["leaderboard", "--db", str(missing)]) == 2
    assert "no leaderboard store" in capsys.readouterr().err
    assert not missing.exists()


def test_compare(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _b3f(["leaderboard", "--db", db, "compare", "deep3d", "3ddfa"]) == 0
    out = capsys.readouterr().out
    assert "deep3d" in out and "3ddfa" in out and "p < 0.05" in out
    # options before or after the sub-command both work
    assert _b3f(["leaderboard", "--db", db, "--protocol", "nme68", "compare", "deep3d", "prnet",
                 "--metric", "nme", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc) == 1 and doc[0]["protocol"] == "nme68"
    res = doc[0]["results"]
    assert [r["metric"] for r in res] == ["nme"] and res[0]["n_shared"] > 80
    assert res[0]["better"] == "deep3d" and res[0]["label_b"] == "prnet"
    assert _b3f(["leaderboard", "compare", "deep3d", "ghost", "--db", db]) == 1
    assert "ghost" in capsys.readouterr().err


def test_module_entry_point(db: str) -> None:
    env = dict(os.environ, B3F_DB=db)
    proc = subprocess.run([sys.executable, "-m", "benchmark3dface.leaderboard.cli", "--export", "csv"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("dataset,split,protocol,rank,method")
