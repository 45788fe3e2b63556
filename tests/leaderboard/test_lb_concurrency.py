"""Concurrent writers lose nothing; a writer killed mid-write leaves the store consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from benchmark3dface.leaderboard import ResultsStore
from benchmark3dface.leaderboard.schema import sample_values_table

from lb_worker import N_SAMPLES, expected_value

WORKER = Path(__file__).resolve().parent / "lb_worker.py"
N_PROCS, N_RUNS = 8, 50


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_writers_lose_nothing(store_url: str) -> None:
    ResultsStore(store_url).close()  # create the schema once, as a runner would
    procs = [_spawn("write", store_url, str(w), str(N_RUNS)) for w in range(N_PROCS)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"worker failed: {err[-3000:]}"
        assert out.strip() == f"done {N_RUNS}"
    with ResultsStore(store_url) as store:
        runs = store.runs()
        assert len(runs) == N_PROCS * N_RUNS
        assert {(r.method, r.seed) for r in runs} == {
            (f"m{w}", r) for w in range(N_PROCS) for r in range(N_RUNS)
        }
        assert store.check_integrity() == []
        for run in runs[:: 37]:  # spot-check content against the writers' formula
            w = int(run.method[1:])
            sv = store.sample_values(run.id, "err")
            assert sv.ids.tolist() == [f"s{k}" for k in range(N_SAMPLES)]
            assert sv.values.tolist() == [expected_value(w, run.seed, k) for k in range(N_SAMPLES)]
            assert run.metrics["err"].value == pytest.approx(sv.values.mean())
            assert run.metrics["err_max"].value == sv.values.max()
        engine = create_engine(store_url)
        with engine.connect() as conn:
            n_rows = conn.execute(select(func.count()).select_from(sample_values_table)).scalar()
        engine.dispose()
        assert n_rows == N_PROCS * N_RUNS * N_SAMPLES


@pytest.mark.parametrize("mode", ["start", "record"])
def test_writer_killed_mid_insert_leaves_store_consistent(store_url: str, mode: str) -> None:
    with ResultsStore(store_url) as store:
        store.record_run(
            __import__("benchmark3dface.leaderboard", fromlist=["RunInfo"]).RunInfo(
                method="survivor", dataset="ds", protocol="p"),
            {"metrics": {"err": 2.0}, "per_sample": {"err": {"a": 2.0}}},
        )
    proc = _spawn("kill", store_url, mode, "20000")
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("MIDWRITE"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"worker was not killed mid-write: {seen} {proc.stderr.read()}"
    assert any(line.startswith("MIDWRITE") for line in seen)

    with ResultsStore(store_url) as store:
        assert store.check_integrity() == []
        finished = store.runs()
        assert [r.method for r in finished] == ["survivor"]  # no half-written finished run
        victims = store.runs(method="victim", status=None)
        if mode == "start":  # opened before the write: still marked running, with no rows
            assert [(r.status, r.n_samples, r.metrics) for r in victims] == [("running", 0, {})]
            assert store.per_sample_metrics(victims[0].id) == []
        else:  # one transaction from the start: nothing of it exists
            assert victims == []
        assert store.sample_values(finished[0].id, "err").values.tolist() == [2.0]
