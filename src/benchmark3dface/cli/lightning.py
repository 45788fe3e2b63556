"""``b3f fit | validate | test | predict``: LightningCLI over any installed method.

Configs are LightningCLI YAML files (experiments/quick/*.yaml, experiments/paper/*.yaml)::

    model:
      class_path: b3f_methods.deep3d.Deep3D
      init_args: {backbone: resnet18, image_size: 128}
    data:
      class_path: benchmark3dface.data.datamodules.SyntheticDataModule
      init_args: {mode: single, image_size: 128}
    trainer: {max_steps: 2000}

Every installed plugin is imported first, so ``--model Deep3D`` works as well as a class path.
Loggers default to CSV + wandb (offline unless wandb is set up, see training/loggers.py).

Checkpoints (``--ckpt_path``): every load passes ``weights_only=True`` (LightningCLI itself
reads a checkpoint's hyper-parameters with ``weights_only=True`` whatever ``--weights_only``
says, so a checkpoint holding pickled Python objects cannot be used through the CLI at all);
a file that loading refuses, or cannot read, is reported in one line (``b3f fit: error: FILE:
not a trusted checkpoint: ...``) with exit status 2, before anything is built or trained. ``--ckpt_path last`` resolves to the newest ``last*.ckpt`` of the run's
ModelCheckpoint folders (a fixed ``dirpath``, or the ``version_N/checkpoints`` folders of the
CSV log), and a resumed ``fit`` continues the CSV log version of its checkpoint (recorded by
``training.loggers.LogVersionCheckpoint``) instead of starting a new one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _import_plugins() -> list[str]:
    from ..methods.registry import installed_methods

    broken = []
    for name, im in installed_methods().items():
        try:
            im.load()
        except Exception as exc:  # listed, not fatal: other methods still work
            broken.append(f"{name}: {type(exc).__name__}: {exc}")
    return broken


#: ``ckpt_path`` keywords Lightning resolves itself (besides ``last``, resolved here).
_KEYWORDS = ("best", "hpc", "registry")
TRUST_HINT = ("b3f loads only checkpoints that hold tensors and plain Python data (torch.load "
              "weights_only=True); nothing in this file was executed")


def last_checkpoint(dirs: list[Path]) -> Path | None:
    """The newest ``last*.ckpt`` (Lightning's ``last``, ``last-v1`` ... names) in ``dirs``, by
    modification time; None when there is none."""
    found = [p for d in dirs if d.is_dir() for p in d.glob("last*.ckpt")
             if p.is_file() and (p.stem == "last" or p.stem.startswith("last-"))]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _checkpoint_dirs(trainer) -> list[Path]:
    """Where the trainer's ModelCheckpoints write: their fixed ``dirpath``, or (no dirpath) the
    ``version_*/checkpoints`` folders of its first logger when that is a CSV logger."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    dirs: list[Path] = []
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint):
            continue
        if cb.dirpath is not None:
            dirs.append(Path(cb.dirpath))
        elif trainer.loggers and isinstance(trainer.loggers[0], CSVLogger):
            root = Path(trainer.loggers[0].root_dir)
            dirs += sorted(root.glob("version_*/checkpoints")) if root.is_dir() else []
    return dirs


def _cli_class():
    """LightningCLI with the project's checkpoint rules (see the module docstring)."""
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import CSVLogger

    from ..training.checkpoints import load_checkpoint
    from ..training.loggers import resumed_csv_logger

    class B3FLightningCLI(LightningCLI):
        def _parse_ckpt_path(self) -> None:
            # LightningCLI reads the checkpoint's hyper-parameters here (weights_only=True);
            # check the file first so that a refused or unreadable one gives one line
            sub = self.config.get("subcommand")
            ckpt = self.config[sub].get("ckpt_path") if sub else None
            if ckpt is not None and str(ckpt) not in (*_KEYWORDS, "last") \
                    and not str(ckpt).startswith(("http://", "https://")):
                load_checkpoint(ckpt, weights_only=True, hint=TRUST_HINT)
            super()._parse_ckpt_path()

        def _prepare_checkpoint(self, subcommand: str) -> None:
            cfg = self.config_init[subcommand]
            if cfg.get("weights_only") is None:
                cfg["weights_only"] = True  # explicit: never Lightning's / torch's default
            ckpt = cfg.get("ckpt_path")
            if ckpt is None or str(ckpt) in _KEYWORDS or str(ckpt).startswith(("http://", "https://")):
                return
            if str(ckpt) == "last":
                path = last_checkpoint(_checkpoint_dirs(self.trainer))
                if path is None:
                    return  # Lightning warns that there is no last checkpoint and starts afresh
                cfg["ckpt_path"] = str(path)
            else:
                path = Path(ckpt)
            blob = load_checkpoint(path, weights_only=bool(cfg["weights_only"]), hint=TRUST_HINT)
            if subcommand == "fit":
                self._continue_csv_log(path, blob)

        def _continue_csv_log(self, path: Path, checkpoint: Any) -> None:
            loggers = list(self.trainer.loggers)
            for i, lg in enumerate(loggers):
                if type(lg) is not CSVLogger or lg._experiment is not None:  # only a CSV log not started yet
                    continue
                new = resumed_csv_logger(lg.save_dir, lg.name, path,
                                         checkpoint=checkpoint if isinstance(checkpoint, dict) else None,
                                         prefix=getattr(lg, "_prefix", ""),
                                         flush_logs_every_n_steps=getattr(lg, "_flush_logs_every_n_steps", 100))
                if new is not None:
                    loggers[i] = new
                    print(f"[b3f] resuming: the CSV log continues {new.log_dir}", file=sys.stderr)
            self.trainer.loggers = loggers

        def before_fit(self) -> None:
            self._prepare_checkpoint("fit")

        def before_validate(self) -> None:
            self._prepare_checkpoint("validate")

        def before_test(self) -> None:
            self._prepare_checkpoint("test")

        def before_predict(self) -> None:
            self._prepare_checkpoint("predict")

    return B3FLightningCLI


def run_lightning(argv: list[str]) -> int:
    from ..methods.base import ReconstructionMethod
    from ..training.configs import expand_config_args

    try:  # layered configs: a file's __base__ files become --config layers before it
        argv = expand_config_args(argv)
    except (FileNotFoundError, ValueError) as exc:
        print(f"b3f {argv[0] if argv else 'fit'}: error: {exc}", file=sys.stderr)
        return 2
    broken = _import_plugins()
    for line in broken:
        print(f"[b3f] warning: method plugin failed to load: {line}", file=sys.stderr)
    import lightning as L

    from ..training.loggers import LogVersionCheckpoint, default_loggers
    from .main import error_line, is_user_error

    sys.argv = [sys.argv[0], *argv]  # LightningCLI parses sys.argv
    subcommand = next((a for a in argv if a in SUBCOMMANDS), "fit")
    try:
        _cli_class()(
            ReconstructionMethod,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults={"default_root_dir": "runs/lightning",
                              "logger": default_loggers("runs/lightning", "b3f"),
                              "callbacks": [LogVersionCheckpoint()]},
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except Exception as exc:  # noqa: BLE001 - bad input (checkpoint, files, values): one line
        if os.environ.get("B3F_DEBUG") or not is_user_error(exc):
            raise
        print(error_line(subcommand, exc), file=sys.stderr)
        return 2
    return 0
