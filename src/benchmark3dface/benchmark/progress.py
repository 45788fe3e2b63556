"""Training progress as one line per phase (``b3f benchmark``): see benchmark3dface.console."""

from __future__ import annotations

import sys
import time
from typing import Any

from lightning.pytorch.callbacks import Callback

from ..console import format_seconds


class PhaseProgress(Callback):
    """One progress line per training phase: ``  deep3d: training step 400/1300 (31%), 2m10s,
    ETA 4m52s``, rewritten in place on a terminal, printed every ``every`` of the run otherwise."""

    def __init__(self, label: str, stream: Any = None, every: float = 0.1) -> None:
        self.label = label
        self.stream = stream or sys.stdout
        self.every = float(every)
        self._t0 = 0.0
        self._next = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _total(self, trainer) -> int | None:
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if total is None and trainer.max_epochs and trainer.max_epochs > 0 and trainer.num_training_batches:
            nb = trainer.num_training_batches
            total = int(trainer.max_epochs * nb) if nb != float("inf") else None
        return total

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()
        self._start_step = trainer.global_step
        self._next = 0.0

    def line(self, step: int, total: int | None, elapsed: float) -> str:
        done = step - self._start_step
        if total:
            frac = step / total
            left = (total - step) * elapsed / done if done > 0 else float("nan")
            eta = format_seconds(left) if left == left else "?"
            return f"  {self.label}: training step {step}/{total} ({100 * frac:.0f}%), {format_seconds(elapsed)}, ETA {eta}"
        return f"  {self.label}: training step {step}, {format_seconds(elapsed)}"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        total = self._total(trainer)
        step = trainer.global_step
        frac = step / total if total else 0.0
        if self._tty:
            self.stream.write("\r" + self.line(step, total, time.perf_counter() - self._t0) + "\033[K")
            self.stream.flush()
        elif total and frac >= self._next:
            print(self.line(step, total, time.perf_counter() - self._t0), file=self.stream, flush=True)
            self._next = frac + self.every

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            msg = f"  {self.label}: trained {trainer.global_step} steps in {format_seconds(time.perf_counter() - self._t0)}"
            self.stream.write(("\r" + msg + "\033[K\n") if self._tty else msg + "\n")
            self.stream.flush()


__all__ = ["PhaseProgress"]
