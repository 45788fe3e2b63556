"""A tiny method and data module for ``b3f fit|validate|...`` tests through LightningCLI: a
linear regression (3 -> 1) as a ReconstructionMethod, so a training step takes microseconds and
no face model is built. Importable by class path (``cli_tiny.TinyRegression``) because the
training tests' conftest puts this folder on ``sys.path``."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmark3dface.methods.base import ReconstructionMethod
from benchmark3dface.training.resumable import resumable_loader


class TinyRegression(ReconstructionMethod):
    """``y = w x + b`` fitted by SGD; logs ``train_loss`` every step and ``val_loss``."""

    def __init__(self, lr: float = 0.1) -> None:
        L.LightningModule.__init__(self)  # no face model: the CLI plumbing is what is tested
        self.lr = float(lr)
        self.lin = torch.nn.Linear(3, 1)

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return ((self.lin(x) - y) ** 2).mean()

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class TinyData(L.LightningDataModule):
    """32 fixed samples ``y = x1 + x2 + x3``; a resumable, unshuffled train loader."""

    def __init__(self, n: int = 32, batch_size: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 3, generator=g)
        self.data = TensorDataset(x, x.sum(1, keepdim=True))
        self.batch_size = batch_size

    def train_dataloader(self):
        return resumable_loader(self.data, self.batch_size, shuffle=False)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)


class CrashAt(L.Callback):
    """Simulates a crash: raises ``RuntimeError`` once optimizer step ``step`` is done (after
    its row was logged), so the run ends without saving a checkpoint of its own."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError(f"simulated crash after step {self.step}")


def write_config(path, ckpt_dir, max_steps: int = 12, every: int = 3, extra_callbacks: str = "") -> str:
    """A LightningCLI config for the tiny method (CSV logging only: no wandb)."""
    path.write_text(f"""seed_everything: 0
model:
  class_path: cli_tiny.TinyRegression
data:
  class_path: cli_tiny.TinyData
trainer:
  accelerator: cpu
  max_steps: {max_steps}
  log_every_n_steps: 1
  val_check_interval: 5
  check_val_every_n_epoch: null
  num_sanity_val_steps: 0
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {ckpt_dir}, save_last: true, every_n_train_steps: {every}, save_top_k: 0}}
{extra_callbacks}""")
    return str(path)
