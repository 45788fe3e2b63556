"""Random-number-generator state in checkpoints, so that a resumed run draws what the
uninterrupted one drew (dropout masks, augmentation, noise in a training step).

Lightning restores weights, optimizer, schedulers and loop counters but not the global RNGs
(Python ``random``, NumPy, torch CPU and CUDA). :class:`RNGStateCheckpoint` stores every
rank's states in the checkpoint and puts them back when the resumed training starts (at
``on_train_start``: after setup, checkpoint loading and the sanity check, right before the
first resumed batch is fetched -- the point where the interrupted run saved them).
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from .resumable import distributed_world


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states: ``python``, ``numpy``, ``torch`` and ``cuda`` (list per device)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # plain types: weights_only loads
    state: dict[str, Any] = {"python": random.getstate(),
                             "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)],
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the RNGs to a :func:`capture_rng_state` record (CUDA states only where present)."""
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise KeyError(f"RNG state lacks {sorted(missing)} (got {sorted(state)})")
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


class RNGStateCheckpoint(Callback):
    """Saves each rank's RNG states in checkpoints and restores them on resume.

    ``state_dict`` runs on every rank while a checkpoint is written (``trainer.save_checkpoint``
    must be called on all ranks), gathers the ranks' states and lets rank 0 store the list;
    on resume rank ``r`` takes entry ``r`` (with a warning, and no restore, when the world size
    changed).
    """

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        mine = capture_rng_state()
        world, _ = distributed_world()
        if world > 1:
            states: list[Any] = [None] * world
            torch.distributed.all_gather_object(states, mine)
        else:
            states = [mine]
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("ranks")
        if not isinstance(ranks, list) or not ranks:
            raise KeyError(f"RNGStateCheckpoint state needs a non-empty 'ranks' list, got keys {sorted(state_dict)}")
        self._pending = ranks

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        ranks, self._pending = self._pending, None
        if len(ranks) != trainer.world_size:
            warnings.warn(f"RNGStateCheckpoint: the checkpoint holds RNG states of {len(ranks)} rank(s), this run "
                          f"has {trainer.world_size}; RNG states are not restored", stacklevel=2)
            return
        restore_rng_state(ranks[trainer.global_rank])


__all__ = ["RNGStateCheckpoint", "capture_rng_state", "restore_rng_state"]
