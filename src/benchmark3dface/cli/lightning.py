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
"""

from __future__ import annotations

import sys

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


def run_lightning(argv: list[str]) -> int:
    from lightning.pytorch.cli import LightningCLI

    from ..methods.base import ReconstructionMethod

    broken = _import_plugins()
    for line in broken:
        print(f"[b3f] warning: method plugin failed to load: {line}", file=sys.stderr)
    import lightning as L

    from ..training.loggers import default_loggers

    sys.argv = [sys.argv[0], *argv]  # LightningCLI parses sys.argv
    LightningCLI(
        ReconstructionMethod,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={"default_root_dir": "runs/lightning",
                          "logger": default_loggers("runs/lightning", "b3f")},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0
