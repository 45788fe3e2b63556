"""Fitting one photo on a busy machine: the OpenMP runtime's default wait policy vs b3f's.

For each setting, ``b3f reconstruct PHOTO --method fitting`` runs in a fresh process, first on
the machine as it is ("quiet"), then with ``--busy`` CPU-bound processes beside it ("busy",
default 2: as many as the development machine has cores). The figure compared is the fit time
the command reports (``timing.reconstruct_seconds`` in ``NAME.json``: the ``fitting`` method's
optimisation of one photo, start-up and I/O excluded); the whole command's wall time is printed
too. Settings (thread environment of the child; ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` /
``OMP_WAIT_POLICY`` / ``KMP_BLOCKTIME`` of this shell are removed first):

- ``openmp-default``: ``B3F_NO_THREAD_DEFAULTS=1``: the OpenMP runtime's own defaults
  (idle threads spin-wait), PyTorch's thread count (one per physical core);
- ``b3f``: what ``b3f`` does by default (``OMP_WAIT_POLICY=PASSIVE``, ``KMP_BLOCKTIME=0``),
  PyTorch's thread count;
- ``b3f --threads 1``: the same with one thread.

Prints a table of quiet / busy seconds and the ratio busy / quiet per setting, and whether
``b3f``'s ratio stays within 2x. The photo is ``../shared/data/photos_5pt/000002.jpg`` (with
its 5-point ``.txt``) when present, else an embedded synthetic photo rendered by the project's
synthetic engine with its 5 landmarks.

    .venv/bin/python benchmarks/threads_under_load.py [--repeats 1] [--busy 2] [--photo P]

Note the machine's load (``uptime``) beside the figures: other work counts as busy processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
SHARED_PHOTO = ROOT.parent / "shared" / "data" / "photos_5pt" / "000002.jpg"
#: thread variables of the calling shell that would mask the defaults being measured
STRIPPED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT",
            "B3F_NO_THREAD_DEFAULTS", "B3F_THREADS")
#: name -> (extra environment, extra b3f arguments)
SETTINGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "openmp-default": ({"B3F_NO_THREAD_DEFAULTS": "1"}, []),
    "b3f": ({}, []),
    "b3f --threads 1": ({}, ["--threads", "1"]),
}
#: the acceptance bound: busy time within this factor of quiet time
MAX_RATIO = 2.0
BUSY_CODE = "while True: pass"


# ------------------------------------------------------------------------------ busy processes
def start_busy(n: int) -> list[subprocess.Popen]:
    """Start ``n`` CPU-bound Python processes (an empty ``while True`` loop each)."""
    return [subprocess.Popen([sys.executable, "-c", BUSY_CODE], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """Terminate (then kill, if needed) the processes started by :func:`start_busy` and reap them."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc/PID/stat``), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------ arithmetic
def ratios(times: dict[str, tuple[float, float]]) -> dict[str, float]:
    """``{setting: busy / quiet}`` from ``{setting: (quiet seconds, busy seconds)}``."""
    out = {}
    for name, (quiet, busy) in times.items():
        if quiet <= 0:
            raise ValueError(f"{name}: quiet time must be positive, got {quiet}")
        out[name] = busy / quiet
    return out


def format_table(times: dict[str, tuple[float, float]], walls: dict[str, tuple[float, float]] | None = None,
                 max_ratio: float = MAX_RATIO) -> str:
    """The printed table: per setting quiet / busy fit seconds, busy / quiet, within bound."""
    r = ratios(times)
    lines = [f"{'setting':18s} {'quiet s':>8s} {'busy s':>8s} {'busy/quiet':>10s}  within {max_ratio:g}x"
             + ("   (whole command: quiet / busy wall s)" if walls else "")]
    for name, (quiet, busy) in times.items():
        line = f"{name:18s} {quiet:8.2f} {busy:8.2f} {r[name]:10.2f}  {'yes' if r[name] <= max_ratio else 'NO'}"
        if walls and name in walls:
            line += f"   ({walls[name][0]:.1f} / {walls[name][1]:.1f})"
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the runs
def synthetic_photo(folder: Path) -> Path:
    """Write an embedded synthetic photo (``synthetic.png``) and its 5 points (``.txt``)."""
    import numpy as np
    from PIL import Image

    from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset

    s = SyntheticFaceDataset({"mode": "single", "image_size": 224}, split="test", size=1)[0]
    img = (s.image.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    path = folder / "synthetic.png"
    Image.fromarray(img).save(path)
    np.savetxt(path.with_suffix(".txt"), s.lm5.numpy(), fmt="%.3f")
    return path


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    env.update(extra)
    return env


def fit_once(photo: Path, out: Path, env: dict[str, str], args: list[str], timeout: float) -> tuple[float, float]:
    """One ``b3f reconstruct --method fitting`` run; returns (fit seconds, wall seconds)."""
    cmd = [sys.executable, "-m", "benchmark3dface", "reconstruct", str(photo), "--method", "fitting",
           "--out", str(out), *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    info = json.loads((out / f"{photo.stem}.json").read_text())
    return float(info["timing"]["reconstruct_seconds"]), wall


def measure(photo: Path, settings: list[str], busy: int, repeats: int, timeout: float,
            work: Path) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """Median fit and wall seconds per setting, quiet and busy. The phases alternate (quiet,
    busy, quiet, busy ...) so that a change in the machine's other load hits both alike."""
    times, walls = {}, {}
    for name in settings:
        extra, args = SETTINGS[name]
        env = child_env(extra)
        runs: dict[str, list[tuple[float, float]]] = {"quiet": [], "busy": []}
        for k in range(repeats):
            for phase in ("quiet", "busy"):
                procs = start_busy(busy) if phase == "busy" else []
                try:
                    r = fit_once(photo, work / f"{name.replace(' ', '_')}_{phase}_{k}", env, args, timeout)
                finally:
                    stop_busy(procs)
                runs[phase].append(r)
                print(f"  {name:18s} {phase} #{k + 1}: fit {r[0]:.2f} s, command {r[1]:.1f} s", flush=True)
        per = {ph: (median(r[0] for r in rs), median(r[1] for r in rs)) for ph, rs in runs.items()}
        times[name] = (per["quiet"][0], per["busy"][0])
        walls[name] = (per["quiet"][1], per["busy"][1])
    return times, walls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", type=Path, default=None, help="photo to fit (default: 000002.jpg or a synthetic one)")
    ap.add_argument("--busy", type=int, default=2, help="CPU-bound processes started beside the busy runs")
    ap.add_argument("--repeats", type=int, default=1, help="runs per setting and phase (median reported)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {list(SETTINGS)}")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per b3f run")
    args = ap.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    with tempfile.TemporaryDirectory(prefix="b3f_threads_") as tmp:
        work = Path(tmp)
        photo = args.photo or (SHARED_PHOTO if SHARED_PHOTO.is_file() else synthetic_photo(work))
        load = os.getloadavg()
        print(f"photo {photo}; {os.cpu_count()} CPUs; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"before; {args.busy} busy process(es) in the busy runs", flush=True)
        times, walls = measure(photo, settings, args.busy, args.repeats, args.timeout, work)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(format_table(times, walls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
