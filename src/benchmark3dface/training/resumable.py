"""Exactly resumable training data order: a sharded per-epoch shuffle and a stateful DataLoader.

Lightning restores the model, optimizer, LR schedulers and loop counters from a checkpoint,
but the data order only when the train DataLoader is *stateful* (has ``state_dict`` /
``load_state_dict``: the fit loop saves it in ``checkpoint["loops"]["fit_loop"]
["state_dict"]["combined_loader"]`` and loads it before it creates the resumed epoch's
iterator). A plain ``DataLoader(shuffle=True, generator=g)`` is not: its ``RandomSampler``
draws every epoch's permutation from one generator, so a resumed run replays epoch 0's order
(fresh generator) and re-reads the interrupted epoch from its start.

:class:`ResumableSampler` makes the order a pure function of ``(seed, epoch)`` (the
:class:`~torch.utils.data.DistributedSampler` permutation, sharded by rank; Lightning calls
``set_epoch`` every epoch and, since it is a ``DistributedSampler``, never swaps it for its
own), and :class:`ResumableDataLoader` counts the batches it hands out, so a checkpoint taken
anywhere in an epoch resumes with exactly the samples not yet seen (the skipped ones are never
loaded). Datasets must be index-pure (item ``i`` depends only on ``i``: true of the synthetic
engine and of the readers); worker RNG streams are re-seeded per epoch from ``(seed, epoch)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def distributed_world() -> tuple[int, int]:
    """``(world_size, rank)`` of the initialised default process group, else ``(1, 0)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class ResumableSampler(DistributedSampler):
    """Per-epoch shuffle (permutation seeded by ``seed + epoch``), sharded over ranks, that can
    start part-way through an epoch.

    Rank ``r`` of ``R`` gets elements ``r, r + R, r + 2R ...`` of the epoch's (padded)
    permutation -- ``DistributedSampler``'s order, so an epoch is the same set of samples at
    any world size. ``start`` skips this rank's first ``start`` indices of the current epoch
    (set by :meth:`ResumableDataLoader.load_state_dict`; cleared when the epoch changes).
    ``len()`` is always the full epoch (Lightning counts the resumed epoch's batches from it).

    Args:
        dataset: a sized dataset.
        shuffle: permute every epoch (False: dataset order, still sharded).
        seed: permutation seed (the same on every rank).
        num_replicas / rank: default from the initialised process group, else ``1`` / ``0``.
        drop_last: drop the tail that does not divide evenly over the ranks (False: pad it by
            repeating the first indices, as ``DistributedSampler`` does).
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None, drop_last: bool = False) -> None:
        world, me = distributed_world()
        num_replicas = world if num_replicas is None else int(num_replicas)
        rank = me if rank is None else int(rank)
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=int(seed),
                         drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (Lightning calls this before every epoch); a resume offset only
        survives when the epoch does not change."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.start = 0
        super().set_epoch(epoch)

    def epoch_indices(self) -> list[int]:
        """This rank's full index list for the current epoch (ignores ``start``)."""
        return list(super().__iter__())

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start:])


class _CountingIterator:
    """Wraps a DataLoader iterator and counts the batches it has yielded."""

    def __init__(self, inner: Iterator, owner: ResumableDataLoader) -> None:
        self._inner = inner
        self._owner = owner

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        batch = next(self._inner)
        self._owner._yielded += 1
        return batch

    def __len__(self) -> int:
        return len(self._owner)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` whose position Lightning checkpoints.

    ``state_dict()`` = ``{"epoch", "consumed"}`` (this rank's samples of the epoch already
    handed out) plus what they refer to (``num_replicas``, ``seed``, ``dataset_len``,
    ``shuffle``); ``load_state_dict`` points the sampler at the first unseen sample, converting
    the position when the number of ranks changed (exact when the consumed global prefix
    divides evenly over the new ranks).

    Args:
        dataset, batch_size: as DataLoader.
        sampler: a :class:`ResumableSampler` (None: one over ``dataset`` with ``shuffle`` and
            seed 0). Another sampler (e.g. the ``SequentialSampler`` Lightning swaps in for
            ``overfit_batches``) gives a plain, non-resumable loader (empty state).
        generator: seeds worker processes; re-seeded from ``(seed, epoch)`` at every epoch so
            worker seeds never draw from the global RNG (created when None).
        **kwargs: any other DataLoader argument except ``batch_sampler``.
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Any = None, generator: torch.Generator | None = None, **kwargs: Any) -> None:
        if kwargs.get("batch_sampler") is not None:
            raise ValueError("ResumableDataLoader batches its sampler itself; do not pass batch_sampler")
        kwargs.pop("batch_sampler", None)
        if sampler is None:
            sampler = ResumableSampler(dataset, shuffle=True if shuffle is None else bool(shuffle))
        elif shuffle:
            raise ValueError("ResumableDataLoader: give shuffle to the sampler, not the loader")
        super().__init__(dataset, batch_size=batch_size, sampler=sampler,
                         generator=generator if generator is not None else torch.Generator(), **kwargs)
        self._yielded = 0
        self._iter_epoch = int(getattr(sampler, "epoch", 0))
        self._iter_start = int(getattr(sampler, "start", 0))

    @property
    def resumable(self) -> bool:
        """Whether the sampler is a :class:`ResumableSampler` (else the state is empty)."""
        return isinstance(self.sampler, ResumableSampler)

    def __iter__(self) -> _CountingIterator:  # type: ignore[override]
        s = self.sampler
        if isinstance(s, ResumableSampler):
            self._iter_epoch, self._iter_start = s.epoch, s.start
            assert self.generator is not None
            self.generator.manual_seed((s.seed * 1_000_003 + s.epoch) % (2**63))
        self._yielded = 0
        return _CountingIterator(super().__iter__(), self)

    # ---------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """This rank's position: the epoch being read and the samples of it already yielded."""
        s = self.sampler
        if not isinstance(s, ResumableSampler):
            return {}
        consumed = min(self._iter_start + self._yielded * int(self.batch_size or 1), s.num_samples)
        return {"epoch": int(self._iter_epoch), "consumed": int(consumed), "num_replicas": int(s.num_replicas),
                "seed": int(s.seed), "shuffle": bool(s.shuffle), "dataset_len": len(s.dataset)}  # type: ignore[arg-type]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state``: the sampler starts at this rank's first unseen sample of the
        saved epoch, or at the next epoch when the saved one has no full batch left."""
        s = self.sampler
        if not state or not isinstance(s, ResumableSampler):
            return
        missing = {"epoch", "consumed"} - set(state)
        if missing:
            raise KeyError(f"ResumableDataLoader state lacks {sorted(missing)} (got keys {sorted(state)})")
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        changed = [k for k, mine in (("seed", s.seed), ("shuffle", s.shuffle), ("dataset_len", len(s.dataset)))  # type: ignore[arg-type]
                   if k in state and state[k] != mine]
        if changed:
            warnings.warn(f"resuming the data order with a different {', '.join(changed)} than the checkpoint's: "
                          f"the resumed epoch skips {consumed} samples per rank of a different order",
                          stacklevel=2)
        old_r = int(state.get("num_replicas", s.num_replicas))
        if old_r != s.num_replicas:
            global_prefix = consumed * old_r
            if global_prefix % s.num_replicas:
                warnings.warn(f"resuming on {s.num_replicas} ranks from a checkpoint of {old_r}: the "
                              f"{global_prefix} samples already seen do not divide evenly, a few are "
                              "skipped or repeated", stacklevel=2)
            consumed = global_prefix // s.num_replicas
        remaining = s.num_samples - consumed
        full_batch = int(self.batch_size or 1) if self.drop_last else 1
        if remaining < full_batch:  # the saved epoch is finished: start the next one
            epoch, consumed = epoch + 1, 0
        s.set_epoch(epoch)
        s.start = consumed
        self._iter_epoch, self._iter_start, self._yielded = epoch, consumed, 0


def resumable_loader(dataset: Dataset, batch_size: int, seed: int = 0, shuffle: bool = True,
                     drop_last: bool = False, **kwargs: Any) -> ResumableDataLoader:
    """A :class:`ResumableDataLoader` over a :class:`ResumableSampler` of ``dataset`` (sharded
    over the initialised process group); other keyword arguments go to the DataLoader."""
    sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed)
    return ResumableDataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)


__all__ = ["ResumableDataLoader", "ResumableSampler", "distributed_world", "resumable_loader"]
