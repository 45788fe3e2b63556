"""The Lightning callback inside each trial of an offline sweep (``b3f sweep``).

``b3f sweep`` appends it to every trial's ``b3f fit`` command line
(``--trainer.callbacks+={"class_path": "benchmark3dface.training.sweep_trial.SweepTrialReporter", ...}``).
After every validation it reads the sweep metric from ``trainer.callback_metrics`` and

* reports it to the Optuna trial (``trial.report(value, step)``, ``step`` = the number of
  validations so far: wandb's Hyperband counts ``min_iter`` in metric reports too) and, when the
  pruner says so, stops the training (``trainer.should_stop``; the trial is then *pruned*);
* writes the trial's record, ``out`` (JSON): the metric's values ``[[global_step, value], ...]``,
  ``pruned``, the method's plugin name, the dataset and the seed (what ``b3f sweep`` records on
  the leaderboard), and the metrics that were logged (to name them when the sweep metric is
  missing).

Rank 0 decides and the decision is broadcast, so every DDP rank stops together.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import lightning as L


def dataset_name(datamodule: Any) -> str:
    """Leaderboard dataset name of a data module: ``synthetic-<mode>@<size>`` for the synthetic
    engine (as the benchmark names its test sets), else the class name."""
    cfg = getattr(datamodule, "config", None)
    if cfg is not None and getattr(cfg, "mode", None) and getattr(cfg, "image_size", None):
        return f"synthetic-{cfg.mode}@{cfg.image_size}"
    return type(datamodule).__name__ if datamodule is not None else "unknown"


class SweepTrialReporter(L.Callback):
    """See the module docstring.

    Args:
        out: the trial's JSON record (written after every validation, atomically).
        metric: the sweep metric (e.g. ``val/true_error_mm``).
        storage / study_name / trial_id: the Optuna study and trial to report to (None: only
            the record is written).
        early_terminate: the sweep's ``early_terminate`` block (the pruner is rebuilt from it
            with :func:`benchmark3dface.training.sweeps.make_pruner`).
    """

    def __init__(self, out: str, metric: str, storage: str | None = None, study_name: str | None = None,
                 trial_id: int | None = None, early_terminate: dict[str, Any] | None = None) -> None:
        self.out = Path(out)
        self.metric = metric
        self.storage = storage
        self.study_name = study_name
        self.trial_id = trial_id
        self.early_terminate = early_terminate
        self.values: list[list[float]] = []
        self.pruned = False
        self._trial: Any = None

    def _optuna_trial(self) -> Any:
        if self._trial is None:
            import optuna

            from .sweeps import make_pruner

            study = optuna.load_study(study_name=self.study_name, storage=self.storage,
                                      pruner=make_pruner(self.early_terminate))
            self._trial = optuna.trial.Trial(study, int(self.trial_id))
        return self._trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            raw = trainer.callback_metrics.get(self.metric)
            value = float(raw) if raw is not None else None
            if value is not None:
                self.values.append([int(trainer.global_step), value])
                if self.storage and self.trial_id is not None and math.isfinite(value):
                    trial = self._optuna_trial()
                    trial.report(value, step=len(self.values))
                    prune = bool(trial.should_prune())
            self._write(trainer, pl_module, prune)
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned = True
            trainer.should_stop = True

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, prune: bool) -> None:
        spec = getattr(type(pl_module), "spec", None)
        record = {"metric": self.metric, "values": self.values, "pruned": self.pruned or prune,
                  "method": getattr(spec, "name", type(pl_module).__name__),
                  "dataset": dataset_name(getattr(trainer, "datamodule", None)),
                  "seed": int(os.environ.get("PL_GLOBAL_SEED", 0) or 0), "global_step": int(trainer.global_step),
                  "logged": sorted(trainer.callback_metrics)}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self.out)


__all__ = ["SweepTrialReporter", "dataset_name"]
