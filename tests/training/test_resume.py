"""Exact resume of R-Net training: a run interrupted after a checkpoint and resumed with
``trainer.fit(..., ckpt_path=...)`` ends with the uninterrupted run's weights (bit for bit) and
repeats its loss history and data order -- at an epoch boundary and mid-epoch.

R-Net with a resnet10t backbone, 8 steps of 2 samples over an 8-sample synthetic set (4 steps per epoch), cosine LR schedule,
checkpoints every 2 steps (ModelCheckpoint with save_last)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from training_helpers import (
    QUIET,
    History,
    StopAt,
    state_of,
    tiny_datamodule,
    tiny_deep3d,
)

from benchmark3dface.training import RNGStateCheckpoint

STEPS, TRAIN_SIZE, BATCH = 8, 8, 2  # 4 steps per epoch


def run(fm, ckpt_dir: Path, stop: int | None = None, ckpt_path: str | None = None):
    L.seed_everything(0, verbose=False)
    model = tiny_deep3d(lr_schedule="cosine", backbone="resnet10t")
    dm = tiny_datamodule(fm, TRAIN_SIZE, BATCH)
    hist = History()
    callbacks = [hist, RNGStateCheckpoint(),
                 ModelCheckpoint(dirpath=ckpt_dir, filename="{step}", every_n_train_steps=2, save_top_k=-1, save_last=True)]
    if stop is not None:
        callbacks.append(StopAt(stop))
    trainer = L.Trainer(max_steps=STEPS, callbacks=callbacks, **QUIET)
    trainer.fit(model, dm, ckpt_path=ckpt_path, weights_only=True)
    return state_of(model), hist, trainer


@pytest.fixture(scope="module")
def uninterrupted(tiny_fm, tmp_path_factory):
    state, hist, trainer = run(tiny_fm, tmp_path_factory.mktemp("full"))
    assert hist.steps == list(range(1, STEPS + 1)) and trainer.global_step == STEPS
    return state, hist


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ after resume, e.g. {differ[:3]}"


def assert_same_history(full: History, resumed: History, first_step: int) -> None:
    i = full.steps.index(first_step)
    assert resumed.steps == full.steps[i:]
    assert resumed.ids == full.ids[i:], "the resumed run read different samples"
    assert resumed.losses == full.losses[i:]


def test_resume_at_epoch_boundary_is_exact(tiny_fm, uninterrupted, tmp_path):
    full_state, full_hist = uninterrupted
    half = STEPS // 2
    part_state, part_hist, _ = run(tiny_fm, tmp_path, stop=half)
    assert part_hist.losses == full_hist.losses[:half]  # same seed, same first half
    assert (tmp_path / "last.ckpt").is_file()
    state, hist, trainer = run(tiny_fm, tmp_path, ckpt_path="last")
    assert trainer.global_step == STEPS and trainer.current_epoch == 2
    assert_same_history(full_hist, hist, half + 1)
    assert_same_weights(full_state, state)
    assert any(not torch.equal(part_state[k], state[k]) for k in state)  # the second half trained


def test_mid_epoch_resume_is_exact(tiny_fm, uninterrupted, tmp_path):
    full_state, full_hist = uninterrupted
    stop = 6  # two batches into the second epoch
    run(tiny_fm, tmp_path, stop=stop)
    ckpt = tmp_path / f"step={stop}.ckpt"
    loader_state = torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state[0]["epoch"] == 1 and loader_state[0]["consumed"] == 2 * BATCH
    state, hist, _ = run(tiny_fm, tmp_path, ckpt_path=str(ckpt))
    assert_same_history(full_hist, hist, stop + 1)
    assert_same_weights(full_state, state)
