"""Subprocess workers for the concurrency and crash tests (run as a script).

    python lb_worker.py write URL WORKER N_RUNS   -> N_RUNS runs of method m<WORKER>
    python lb_worker.py kill URL start|record N_ROWS -> prints MIDWRITE during a large
                                                      per-sample insert, then hangs
"""

from __future__ import annotations

import sys
import time

from benchmark3dface.leaderboard import ResultsStore, RunInfo

N_SAMPLES = 10


def expected_value(worker: int, run: int, sample: int) -> float:
    """The per-sample value worker ``worker`` writes for run ``run`` (the test recomputes it)."""
    return worker * 1000.0 + run + sample / 100.0


def write(url: str, worker: int, n_runs: int) -> None:
    store = ResultsStore(url)
    for r in range(n_runs):
        values = {f"s{k}": expected_value(worker, r, k) for k in range(N_SAMPLES)}
        mean = sum(values.values()) / N_SAMPLES
        store.record_run(
            RunInfo(method=f"m{worker}", dataset="ds", protocol="p", seed=r,
                    config={"worker": worker}),
            {"metrics": {"err": {"value": mean, "n": N_SAMPLES}, "err_max": max(values.values())},
             "per_sample": {"err": values}},
        )
    store.close()
    print(f"done {n_runs}", flush=True)


def kill(url: str, mode: str, n_rows: int) -> None:
    store = ResultsStore(url)
    info = RunInfo(method="victim", dataset="ds", protocol="p", config={"big": True})
    result = {"metrics": {"err": 1.0}, "per_sample": {"err": {f"s{k}": float(k) for k in range(n_rows)}}}

    def on_chunk(written: int, total: int) -> None:
        if written >= 2 * 1000:
            print(f"MIDWRITE {written}/{total}", flush=True)
            time.sleep(120)  # the parent SIGKILLs us here, mid-transaction

    if mode == "start":
        run_id = store.start_run(info)
        print(f"STARTED {run_id}", flush=True)
        store.finish_run(run_id, result, chunk_size=1000, on_chunk=on_chunk)
    else:
        store.record_run(info, result, chunk_size=1000, on_chunk=on_chunk)
    print("FINISHED", flush=True)  # never reached when killed


if __name__ == "__main__":
    cmd, url = sys.argv[1], sys.argv[2]
    if cmd == "write":
        write(url, int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "kill":
        kill(url, sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown command {cmd!r}")
