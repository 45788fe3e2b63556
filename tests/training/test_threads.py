"""Thread settings that survive a busy machine: the OpenMP environment ``b3f`` sets before
torch is loaded, ``--threads``, and the pieces of benchmarks/threads_under_load.py (its busy
processes really burn CPU and stop; its ratio arithmetic). The benchmark itself is not run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark3dface import threads

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("threads_under_load", ROOT / "benchmarks" / "threads_under_load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_openmp_defaults_unless_the_user_set_them():
    env: dict[str, str] = {}
    assert threads.apply_openmp_defaults(env) == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.apply_openmp_defaults(env) == {"KMP_BLOCKTIME": "0"}
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
    env = {"B3F_NO_THREAD_DEFAULTS": "1"}
    assert threads.apply_openmp_defaults(env) == {} and "OMP_WAIT_POLICY" not in env


@pytest.mark.parametrize("preset,expected", [(None, "PASSIVE 0"), ("ACTIVE", "ACTIVE 0")])
def test_the_entry_point_sets_them_before_torch_is_imported(preset, expected):
    # an import hook records the environment at the moment torch is first imported
    code = ("import os, sys\n"
            "seen = []\n"
            "class Spy:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' and not seen:\n"
            "            seen.append((os.environ.get('OMP_WAIT_POLICY'), os.environ.get('KMP_BLOCKTIME')))\n"
            "sys.meta_path.insert(0, Spy())\n"
            "from benchmark3dface.cli.main import main\n"
            "before = 'torch' in sys.modules\n"
            "try:\n    main(['render', '--help'])\nexcept SystemExit:\n    pass\n"
            "import torch\n"
            "print(*seen[0], before)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "B3F_NO_THREAD_DEFAULTS")}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == f"{expected} False"


def test_set_threads_and_training_threads(monkeypatch):
    monkeypatch.setenv(threads.THREADS_VARIABLE, "")  # restored (removed) after the test
    monkeypatch.delenv(threads.THREADS_VARIABLE)
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(None) == before and threads.requested_threads() is None
        assert threads.training_threads(1, cpu_count=2) == 1 and threads.training_threads(0, cpu_count=8) == 8
        assert threads.training_threads(5, cpu_count=2) == 1
        assert threads.set_threads(1) == 1 == torch.get_num_threads()
        assert os.environ[threads.THREADS_VARIABLE] == "1" and threads.requested_threads() == 1
        assert threads.training_threads(1, cpu_count=8) == 1  # the user's --threads wins
    finally:
        torch.set_num_threads(before)
    for bad in (0, -2, "two"):
        with pytest.raises(ValueError, match="--threads expects a positive integer"):
            threads.parse_threads(bad)


def test_busy_processes_burn_cpu_and_stop():
    bench = _bench()
    procs = bench.start_busy(2)
    try:
        time.sleep(1.5)
        assert all(p.poll() is None for p in procs)
        used = [bench.cpu_seconds(p.pid) for p in procs]
    finally:
        bench.stop_busy(procs)
    # on an idle 2-core machine each would use ~1.5 s; a shared machine gives them less, but a
    # process that only sleeps would use ~0
    assert sum(used) > 0.3, used
    assert all(p.returncode is not None for p in procs)  # stopped and reaped
    assert bench.cpu_seconds(os.getpid()) > 0


def test_ratio_arithmetic_and_table():
    bench = _bench()
    times = {"openmp-default": (3.7, 57.0), "b3f": (3.5, 6.3)}
    r = bench.ratios(times)
    assert r["openmp-default"] == pytest.approx(57.0 / 3.7) and r["b3f"] == pytest.approx(1.8)
    table = bench.format_table(times, {"b3f": (9.0, 12.5)}).splitlines()
    assert table[0].split()[:4] == ["setting", "quiet", "s", "busy"]
    assert table[1].split()[:5] == ["openmp-default", "3.70", "57.00", "15.41", "NO"]
    assert table[2].split()[:5] == ["b3f", "3.50", "6.30", "1.80", "yes"] and table[2].endswith("(9.0 / 12.5)")
    with pytest.raises(ValueError, match="quiet time must be positive"):
        bench.ratios({"x": (0.0, 1.0)})
    env = bench.child_env({"B3F_NO_THREAD_DEFAULTS": "1"})
    assert "OMP_NUM_THREADS" not in env and "OMP_WAIT_POLICY" not in env and env["B3F_NO_THREAD_DEFAULTS"] == "1"
