"""Loggers: a CSV logger always, plus wandb (offline unless the user has set wandb up).

wandb runs offline by default so nothing reaches the network; it goes online when the user
has configured it: ``WANDB_MODE=online`` or an API key (``WANDB_API_KEY`` or a ``wandb login``
netrc entry). Offline runs can be uploaded later with ``wandb sync``.

A resumed fit keeps one CSV history: a checkpoint records the CSV log version it was trained
under (:class:`LogVersionCheckpoint`, added by ``b3f fit`` and the benchmark runner), and
``default_loggers(..., resume_from=CKPT)`` / :func:`resumed_csv_logger` log into that same
``version_N`` folder with a :class:`ResumedCSVLogger`: the rows written before the checkpoint
are kept, the rows the interrupted run wrote after it (steps the resumed run logs again) are
dropped when the resumed run logs its first row, and the new rows are appended. (Lightning's
own ``CSVLogger`` deletes an existing ``metrics.csv``, and by default picks ``version_N+1``.)
"""

from __future__ import annotations

import csv
import netrc
import os
import re
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

#: Top-level checkpoint key written by :class:`LogVersionCheckpoint`.
CHECKPOINT_KEY = "b3f_logs"


def wandb_mode() -> str:
    """``online`` when the user has set wandb up, ``disabled`` when asked, else ``offline``."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("online", "offline", "disabled"):
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


# ---------------------------------------------------------------------------- resumed CSV logs
class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is continued, not deleted: its
    rows are kept until the first new row is logged, then the old rows whose ``step`` is at or
    after that row's step are dropped (the resumed run logs those steps again)."""

    def _check_log_dir_exists(self) -> None:  # called by the base __init__ instead of deleting
        self._pending_old: list[dict[str, str]] | None = None
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            self._pending_old = list(reader)
            self._old_keys = list(reader.fieldnames or [])

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if getattr(self, "_pending_old", None) is not None:
            first = step if step is not None else len(self.metrics)
            kept = [r for r in self._pending_old if _row_step(r) is not None and _row_step(r) < first]
            self.metrics_keys = sorted(set(self.metrics_keys) | set(self._old_keys))
            with self._fs.open(self.metrics_file_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            self._pending_old = None
        super().log_metrics(metrics_dict, step)


def _row_step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step", "")))
    except (TypeError, ValueError):
        return None


class ResumedCSVLogger(CSVLogger):
    """A ``CSVLogger`` that continues an existing version folder (see the module docstring).

    Args:
        save_dir, name: as ``CSVLogger``.
        version: the version to continue (an int for ``version_N``, or a folder name).
    """

    def __init__(self, save_dir: str | Path, name: str, version: int | str, **kwargs: Any) -> None:
        super().__init__(str(save_dir), name=name, version=version, **kwargs)

    @property
    @rank_zero_experiment  # other DDP ranks get Lightning's dummy experiment, as with CSVLogger
    def experiment(self) -> ExperimentWriter:  # type: ignore[override]
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class LogVersionCheckpoint(Callback):
    """Records, in every checkpoint, the CSV log folder of the run (``checkpoint["b3f_logs"]
    = {"csv_root": <save_dir>/<name> (absolute), "csv_version": N or "name"}``) so that a
    resumed run can continue it (:func:`checkpoint_log_version`)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if csv_logger is not None:
            checkpoint[CHECKPOINT_KEY] = {"csv_root": str(Path(csv_logger.root_dir).resolve()),
                                          "csv_version": csv_logger.version}


def _version_from_folder(folder: str) -> int | str:
    m = re.fullmatch(r"version_(\d+)", folder)
    return int(m.group(1)) if m else folder


def existing_versions(root: str | Path) -> list[int]:
    """The ``N`` of the ``version_N`` folders under ``root`` (= ``save_dir/name``), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir()
                  if p.is_dir() and (m := re.fullmatch(r"version_(\d+)", p.name)))


def checkpoint_log_version(ckpt_path: str | Path, root: str | Path,
                           checkpoint: dict[str, Any] | None = None) -> int | str | None:
    """The CSV log version under ``root`` (= ``save_dir/name``) that the run which wrote
    ``ckpt_path`` logged to: the one :class:`LogVersionCheckpoint` recorded in it (from
    ``checkpoint`` when already loaded, else read with ``weights_only=True``: nothing but plain
    data is unpickled), else the ``version_N`` folder the checkpoint lies in (Lightning's
    default ``root/version_N/checkpoints/``), else None."""
    from .checkpoints import load_checkpoint

    ckpt, root = Path(ckpt_path).resolve(), Path(root).resolve()
    if checkpoint is None:
        try:
            checkpoint = load_checkpoint(ckpt, weights_only=True)
        except (OSError, ValueError):  # unreadable / untrusted: the checkpoint load itself reports it
            checkpoint = None
    rec = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if isinstance(rec, dict) and rec.get("csv_root") == str(root) and rec.get("csv_version") is not None:
        return rec["csv_version"]
    if ckpt.parent.name == "checkpoints" and ckpt.parent.parent.parent == root:
        return _version_from_folder(ckpt.parent.parent.name)
    return None


def resumed_csv_logger(save_dir: str | Path, name: str, ckpt_path: str | Path | None,
                       guess_latest: bool = False, checkpoint: dict[str, Any] | None = None,
                       **kwargs: Any) -> ResumedCSVLogger | None:
    """A :class:`ResumedCSVLogger` continuing the log version of ``ckpt_path`` under
    ``save_dir/name`` (:func:`checkpoint_log_version`); when the checkpoint does not say,
    ``guess_latest`` continues the newest ``version_N`` (right where ``save_dir`` belongs to
    one run only, as in the benchmark runner). None when there is nothing to continue."""
    if ckpt_path is None or not Path(ckpt_path).is_file():
        return None
    root = Path(save_dir) / name
    version = checkpoint_log_version(ckpt_path, root, checkpoint)
    if version is None and guess_latest:
        found = existing_versions(root)
        version = found[-1] if found else None
    if version is None:
        return None
    return ResumedCSVLogger(save_dir, name, version, **kwargs)


def default_loggers(save_dir: str | Path, name: str, version: str | None = None, project: str = "benchmark3dface",
                    config: dict | None = None, use_wandb: bool = True, resume_from: str | Path | None = None):
    """[CSVLogger, WandbLogger] writing under ``save_dir``.

    ``resume_from``: the checkpoint a fit resumes from; the CSV log then continues that run's
    version folder (:func:`resumed_csv_logger` with ``guess_latest=True``: pass it only when
    ``save_dir`` holds this run's logs alone) instead of starting ``version_N+1``."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    resumed = (resumed_csv_logger(save_dir, name, resume_from, guess_latest=True)
               if resume_from is not None and version is None else None)
    loggers = [resumed if resumed is not None else CSVLogger(str(save_dir), name=name, version=version)]
    mode = wandb_mode()
    if use_wandb and mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        wb = WandbLogger(project=project, name=f"{name}-{version}" if version else name,
                         save_dir=str(save_dir), offline=(mode != "online"), config=config)
        # Lightning passes anonymous=None, which current wandb reports as a deprecated setting
        getattr(wb, "_wandb_init", {}).pop("anonymous", None)
        loggers.append(wb)
    return loggers
