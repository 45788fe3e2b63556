"""The DF-MVR inference timer measures what it claims (a known sleep), and the script runs."""

from __future__ import annotations

import time


def test_timer_measures_a_known_sleep_and_skips_warmup(benchmark_script):
    mod = benchmark_script("dfmvr_infer")
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.03)

    ms = mod.time_call(fn, repeats=2, warmup=1)
    assert len(calls) == 3 and len(ms) == 2
    assert all(29.0 <= t < 150.0 for t in ms), ms


def test_quick_run_prints_figures(capsys, benchmark_script):
    mod = benchmark_script("dfmvr_infer")
    assert mod.main(["--repeats", "1", "--skip-paper"]) == 0
    out = capsys.readouterr().out
    assert "quick network" in out and "ms per triplet" in out and "involution" in out
