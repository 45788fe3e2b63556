"""``b3f zoo train``: run or resume a recipe's long training (docs/zoo.md).

The run lives in ``<work>/<name>/`` (default ``runs/zoo/<name>/``):

- ``checkpoints/last.ckpt``: the resumable state (model, optimizer, LR schedule, loop counters,
  the data order of the resumable train loader, the RNG states, the summed wall time), written at least every
  ``zoo.checkpoint_every_minutes`` (or ``checkpoint_every_steps``) and at the end. Running
  the same command again resumes from it, and continues exactly: the same weights as an
  uninterrupted run (tests/zoo checks it);
- ``train.log``: a progress line every ``zoo.log_every_seconds``: step / max steps, steps per
  second, the last loss, wall time so far and the ETA; plus the start, each resume and the end;
- ``train.pid``: the process of a background run (``b3f zoo train`` refuses to start a second
  one while it lives).

When the last step is done the weights are exported to ``<zoo>/<name>.pt`` with their manifest
(:func:`~.entries.export_entry`). The trainer's accelerator is ``auto`` unless the recipe says
otherwise: a GPU when present, else the CPU.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from .entries import ZooEntry, build_model, export_entry
from .recipes import Recipe

WORK_DIR = Path("runs") / "zoo"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def _callback_base():
    from lightning.pytorch.callbacks import Callback

    return Callback


class ZooProgress(_callback_base()):
    """Progress / ETA lines in the run's log and the wall time summed over every session (kept
    in the checkpoint, so a resumed run's manifest reports the whole training's wall time)."""

    def __init__(self, log_path: Path, every_s: float = 30.0) -> None:
        self.log_path = Path(log_path)
        self.every_s = float(every_s)
        self.wall_before = 0.0  # wall seconds of earlier sessions (restored from the checkpoint)
        self._t0 = time.perf_counter()
        self._start_step = 0
        self._next = 0.0
        self.last_loss: float | None = None
        self.stop_requested = False
        self.stop_at: int | None = None
        self.last_path: Path | None = None

    def write(self, text: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(f"{_now()} {text}\n")

    @property
    def session_s(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def wall_s(self) -> float:
        return self.wall_before + self.session_s

    def state_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wall_before = float(state.get("wall_s", 0.0))

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()
        self._start_step = trainer.global_step
        self._next = self.every_s
        dev = str(pl_module.device)
        what = "resumed at step" if trainer.global_step else "started at step"
        self.write(f"{what} {trainer.global_step}/{trainer.max_steps} on {dev} "
                   f"(wall time so far {format_seconds(self.wall_before)})")

    def line(self, step: int, total: int) -> str:
        done = step - self._start_step
        rate = done / self.session_s if self.session_s > 0 else float("nan")
        eta = (total - step) / rate if rate and rate > 0 else float("nan")
        loss = "" if self.last_loss is None else f", loss {self.last_loss:.4g}"
        return (f"step {step}/{total} ({100.0 * step / max(total, 1):.1f}%), {rate:.2f} steps/s{loss}, "
                f"wall {format_seconds(self.wall_s)}, ETA {format_seconds(eta)}")

    def request_stop(self) -> None:
        self.stop_requested = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.last_loss = float(loss.detach())
        stop = False
        if self.stop_requested and not trainer.should_stop:
            stop = True
            self.write(f"interrupted: stopping after step {trainer.global_step} (saving the checkpoint)")
        if self.stop_at is not None and trainer.global_step >= self.stop_at and not trainer.should_stop:
            stop = True
            self.write(f"session step limit {self.stop_at} reached: stopping (resumable)")
        if stop or trainer.global_step >= trainer.max_steps:
            # saved here, where ModelCheckpoint saves too (after the step, before the next batch
            # is fetched): a checkpoint written after fit() returns would resume one batch off
            if self.last_path is not None:
                trainer.save_checkpoint(str(self.last_path))
            trainer.should_stop = True
        if self.session_s >= self._next:
            self._next = self.session_s + self.every_s
            self.write(self.line(trainer.global_step, trainer.max_steps))

    def on_train_end(self, trainer, pl_module) -> None:
        self.write(self.line(trainer.global_step, trainer.max_steps) + " -- session ends")


def run_dir_of(recipe: Recipe, work_dir: str | Path | None = None) -> Path:
    return Path(work_dir or WORK_DIR) / recipe.name


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def train(recipe: Recipe, *, work_dir: str | Path | None = None, zoo_dir: str | Path = "zoo",
          max_steps: int | None = None, accelerator: str | None = None, export: bool = True) -> ZooEntry | None:
    """Run or resume the recipe's training in this process (see the module docstring).
    ``max_steps`` stops this session early (the run stays resumable; nothing is exported
    until the recipe's own ``trainer.max_steps`` is reached). Returns the exported entry, or
    None when the training is not finished yet."""
    import datetime

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    rd = run_dir_of(recipe, work_dir)
    ck = rd / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    log = rd / "train.log"
    cfg = recipe.config
    seed = cfg.get("seed_everything") if isinstance(cfg.get("seed_everything"), int) else 0
    L.seed_everything(seed, workers=True, verbose=False)  # before the model: its initial weights
    model = build_model(recipe.method, recipe.model_args, zoo_dir)
    data_cfg = cfg["data"]
    dm = _import(data_cfg["class_path"])(**(data_cfg.get("init_args") or {}))
    trainer_args = dict(cfg["trainer"])
    for k in ("logger", "callbacks", "default_root_dir", "enable_progress_bar", "max_time"):
        trainer_args.pop(k, None)
    total = recipe.max_steps
    trainer_args["max_steps"] = total  # the schedule always sees the recipe's length
    trainer_args["max_epochs"] = -1
    if accelerator is not None:
        trainer_args["accelerator"] = accelerator
    trainer_args.setdefault("accelerator", "auto")
    every = ({"every_n_train_steps": recipe.checkpoint_every_steps} if recipe.checkpoint_every_steps else
             {"train_time_interval": datetime.timedelta(minutes=recipe.checkpoint_every_minutes)})
    progress = ZooProgress(log, recipe.log_every_seconds)
    progress.stop_at = None if max_steps is None else int(max_steps)  # a session cap: stop, stay resumable
    last = ck / "last.ckpt"
    progress.last_path = last
    resume = str(last) if last.is_file() else None
    from lightning.pytorch.loggers import CSVLogger

    from ..training.rng import RNGStateCheckpoint

    trainer = L.Trainer(default_root_dir=str(rd), enable_progress_bar=False, enable_model_summary=False,
                        logger=CSVLogger(str(rd), name="logs"),  # one version_N folder per session
                        callbacks=[ModelCheckpoint(dirpath=str(ck), save_last=True, save_top_k=0, **every), progress,
                                   RNGStateCheckpoint()],
                        **trainer_args)
    # SIGINT / SIGTERM: finish the current step, then stop and save (safe to interrupt)
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda *_: progress.request_stop())
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    (rd / "state.json").write_text(json.dumps({"global_step": trainer.global_step, "max_steps": total,
                                                "wall_time_s": progress.wall_s, "updated": _now()}))
    if trainer.global_step < total or not export:
        progress.write(f"paused at step {trainer.global_step}/{total}; run `b3f zoo train {recipe.name}` to resume")
        return None
    entry = export_entry(model.cpu(), recipe, zoo_dir, steps=trainer.global_step, wall_time_s=progress.wall_s)
    v = entry.manifest["validation"]
    progress.write(f"finished: exported {entry.weights_path} ({entry.manifest['bytes'] / 2**20:.2f} MB, "
                   f"sha256 {entry.manifest['sha256'][:12]}), validation true error {v['true_error_mm']:.4f} mm "
                   f"on {v['n']} samples")
    return entry


# ------------------------------------------------------------------ background
def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (an exited child not yet reaped -- a zombie -- does not)."""
    try:
        os.kill(pid, 0)
    except (OSError, ProcessLookupError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_pid(recipe: Recipe, work_dir: str | Path | None = None) -> int | None:
    pid_file = run_dir_of(recipe, work_dir) / "train.pid"
    if not pid_file.is_file():
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        return None
    return pid if _alive(pid) else None


def start_background(recipe: Recipe, argv: list[str], *, work_dir: str | Path | None = None) -> int:
    """Start ``b3f zoo train ... --foreground`` detached (its own session: closing the terminal
    does not stop it); returns its pid. Output goes to ``train.log``."""
    rd = run_dir_of(recipe, work_dir)
    rd.mkdir(parents=True, exist_ok=True)
    pid = running_pid(recipe, work_dir)
    if pid is not None:
        raise RuntimeError(f"{recipe.name}: a training is already running (pid {pid}); "
                           f"see {rd / 'train.log'}")
    log = open(rd / "train.log", "a")
    proc = subprocess.Popen([sys.executable, "-m", "benchmark3dface", *argv, "--foreground"], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (rd / "train.pid").write_text(str(proc.pid))
    return proc.pid


def stop_background(recipe: Recipe, work_dir: str | Path | None = None) -> int | None:
    """SIGTERM the background run (it finishes its current step, saves last.ckpt and exits);
    returns the pid signalled, or None."""
    pid = running_pid(recipe, work_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    return pid


def progress_of(recipe: Recipe, work_dir: str | Path | None = None) -> dict[str, Any]:
    """``{"state": not started | running | paused | finished, "step", "last_line"}`` of a run."""
    rd = run_dir_of(recipe, work_dir)
    out: dict[str, Any] = {"state": "not started", "step": None, "last_line": ""}
    log = rd / "train.log"
    if log.is_file():
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        out["last_line"] = lines[-1] if lines else ""
    st = rd / "state.json"
    if st.is_file():
        s = json.loads(st.read_text())
        out["step"] = s.get("global_step")
        out["state"] = "finished" if s.get("global_step", 0) >= s.get("max_steps", 1) else "paused"
    if running_pid(recipe, work_dir) is not None:
        out["state"] = "running"
    return out


__all__ = ["WORK_DIR", "ZooProgress", "progress_of", "run_dir_of", "running_pid", "start_background",
           "stop_background", "train"]
