"""RNGStateCheckpoint: a training step that draws random numbers (dropout, input noise) resumes
exactly only when the RNG states travel in the checkpoint."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import TensorDataset
from training_helpers import QUIET, StopAt, state_of

from benchmark3dface.training import (
    RNGStateCheckpoint,
    capture_rng_state,
    restore_rng_state,
    resumable_loader,
)


class Noisy(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
        g = torch.Generator().manual_seed(0)
        self.data = TensorDataset(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g))

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = x + 0.1 * torch.randn_like(x) + 0.01 * float(np.random.rand()) + 0.01 * random.random()
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return resumable_loader(self.data, batch_size=4, seed=0)


def train(tmp_path, with_rng: bool, stop: int | None = None, ckpt: str | None = None):
    L.seed_everything(1, verbose=False)
    model = Noisy()
    cbs: list = [ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=3, save_top_k=-1)]
    if with_rng:
        cbs.append(RNGStateCheckpoint())
    if stop:
        cbs.append(StopAt(stop))
    L.Trainer(max_steps=10, callbacks=cbs, **QUIET).fit(model, ckpt_path=ckpt, weights_only=True)
    return state_of(model)


@pytest.mark.parametrize("with_rng", [True, False])
def test_resume_with_random_draws(tmp_path, with_rng):
    full = train(tmp_path / "full", with_rng)
    train(tmp_path / "part", with_rng, stop=6)  # mid-epoch (4 steps per epoch)
    resumed = train(tmp_path / "part", with_rng, ckpt=str(tmp_path / "part" / "step=6.ckpt"))
    same = all(torch.equal(full[k], resumed[k]) for k in full)
    assert same == with_rng  # exact with the callback; without it the dropout masks differ


def test_capture_restore_round_trip():
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    with pytest.raises(KeyError, match="numpy"):
        restore_rng_state({"python": state["python"], "torch": state["torch"]})
