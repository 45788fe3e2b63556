"""Shared pieces of the training-infrastructure tests (also imported by ddp_worker.py, which
runs outside pytest): Deng's R-Net on the tiny analytic face model at 64 px, where a training
step takes a fraction of a second on one CPU thread."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

SIZE = 64
EASY = {"yaw_max": 30.0, "occlusion_prob": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0}
QUIET = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
         "num_sanity_val_steps": 0}


def install_tiny_facemodel():
    """Make ``facemodel="tiny"`` load the tiny analytic model in method constructors (the
    methods take a source name); returns ``(model, undo)``."""
    from benchmark3dface.data.synthetic.testing import tiny_facemodel
    from benchmark3dface.methods import base

    fm = tiny_facemodel()
    real = base.load_facemodel

    def load(source: str = "procedural", path: str | None = None, **kw: Any):
        return fm if source == "tiny" else real(source, path, **kw)

    base.load_facemodel = load

    def undo() -> None:
        base.load_facemodel = real

    return fm, undo


def tiny_deep3d(**kw: Any):
    from b3f_methods.deep3d import Deep3D

    args = {"facemodel": "tiny", "backbone": "resnet18", "image_size": SIZE, "lr": 1e-3, "perceptual": "none"}
    args.update(kw)
    return Deep3D(**args)


def tiny_datamodule(fm, train_size: int, batch_size: int, seed: int = 0, **kw: Any):
    from benchmark3dface.data.datamodules import SyntheticDataModule

    return SyntheticDataModule(mode="single", image_size=SIZE, train_size=train_size, val_size=0, test_size=0,
                               batch_size=batch_size, seed=seed, facemodel=fm, options=dict(EASY), **kw)


class History(L.Callback):
    """Per optimizer step: the global step reached, the training loss and the sample ids."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.ids: list[list[str]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.steps.append(int(trainer.global_step))
        self.losses.append(float(loss))
        self.ids.append([str(s) for s in batch.sample_id])


class StopAt(L.Callback):
    """Simulates an interruption: training stops after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
