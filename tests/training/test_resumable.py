"""ResumableSampler / ResumableDataLoader: sharding, per-epoch order, mid-epoch state."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.types import _Stateful
from torch.utils.data import TensorDataset

from benchmark3dface.training.resumable import (
    ResumableDataLoader,
    ResumableSampler,
    resumable_loader,
)


def ids_dataset(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n))


def batches(loader) -> list[list[int]]:
    return [b[0].tolist() for b in loader]


def flat(bs: list[list[int]]) -> list[int]:
    return [i for b in bs for i in b]


@pytest.mark.parametrize("n,world", [(12, 1), (12, 2), (12, 3), (10, 4)])
def test_ranks_partition_each_epoch(n, world):
    ds = ids_dataset(n)
    for epoch in (0, 3):
        shards = []
        for rank in range(world):
            s = ResumableSampler(ds, seed=7, num_replicas=world, rank=rank)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s)
        everything = sorted(i for sh in shards for i in sh)
        assert set(everything) == set(range(n))  # every sample is seen in an epoch
        pad = (-n) % world
        assert len(everything) == n + pad  # only the padding repeats (DistributedSampler rule)
        if pad == 0:
            assert all(not set(a) & set(b) for i, a in enumerate(shards) for b in shards[i + 1:])


def test_order_is_a_function_of_seed_and_epoch():
    ds = ids_dataset(50)
    a, b, c = (ResumableSampler(ds, seed=s, num_replicas=1, rank=0) for s in (3, 3, 4))
    for s in (a, b, c):
        s.set_epoch(2)
    assert list(a) == list(b)
    assert list(a) != list(c)
    a.set_epoch(3)
    assert list(a) != list(b)
    assert list(a) == list(a)  # iterating twice in an epoch repeats the epoch's order


@pytest.mark.parametrize("num_workers", [0, 1])
@pytest.mark.parametrize("drop_last", [False, True])
def test_mid_epoch_state_resumes_with_the_unseen_batches(num_workers, drop_last):
    ds = ids_dataset(23)
    ref = resumable_loader(ds, batch_size=4, seed=5, drop_last=drop_last)
    ref.sampler.set_epoch(1)
    it = iter(ref)
    seen = [next(it)[0].tolist() for _ in range(3)]
    state = ref.state_dict()
    rest = [b[0].tolist() for b in it]
    assert state == {"epoch": 1, "consumed": 12, "num_replicas": 1, "seed": 5, "shuffle": True, "dataset_len": 23}

    new = resumable_loader(ds, batch_size=4, seed=5, drop_last=drop_last, num_workers=num_workers)
    new.load_state_dict(state)
    new.sampler.set_epoch(1)  # what Lightning does before the resumed epoch: must not reset
    assert batches(new) == rest
    whole = flat(seen) + flat(rest)
    if drop_last:  # 5 full batches of distinct samples
        assert len(whole) == len(set(whole)) == 20 and set(whole) <= set(range(23))
    else:
        assert sorted(whole) == list(range(23))
    new.sampler.set_epoch(2)  # the next epoch is whole again
    assert len(flat(batches(new))) == (23 if not drop_last else 20)


def test_state_of_a_finished_epoch_resumes_at_the_next_epoch():
    ds = ids_dataset(10)
    ref = resumable_loader(ds, batch_size=4, seed=1, drop_last=True)
    ref.sampler.set_epoch(4)
    assert len(batches(ref)) == 2
    new = resumable_loader(ds, batch_size=4, seed=1, drop_last=True)
    new.load_state_dict(ref.state_dict())  # 8 of 10 consumed, no full batch left
    assert new.sampler.epoch == 5 and new.sampler.start == 0
    expect = resumable_loader(ds, batch_size=4, seed=1, drop_last=True)
    expect.sampler.set_epoch(5)
    assert batches(new) == batches(expect)


def test_resume_on_fewer_ranks_skips_the_global_prefix():
    ds = ids_dataset(24)
    perm_rest = None
    states = []
    for rank in range(2):  # two ranks, 2 batches of 3 each
        s = ResumableSampler(ds, seed=9, num_replicas=2, rank=rank)
        s.set_epoch(0)
        dl = ResumableDataLoader(ds, batch_size=3, sampler=s)
        it = iter(dl)
        next(it), next(it)
        states.append(dl.state_dict())
    assert states[0]["consumed"] == 6
    full = ResumableSampler(ds, seed=9, num_replicas=1, rank=0)
    perm_rest = full.epoch_indices()[12:]  # the first 6 of each rank = the first 12 globally
    one = resumable_loader(ds, batch_size=3, seed=9)
    one.load_state_dict(states[0])
    assert flat(batches(one)) == perm_rest


def test_changed_data_warns_and_bad_state_raises():
    ds = ids_dataset(12)
    dl = resumable_loader(ds, batch_size=2, seed=0)
    with pytest.warns(UserWarning, match="seed"):
        dl.load_state_dict({"epoch": 0, "consumed": 4, "num_replicas": 1, "seed": 1, "shuffle": True,
                            "dataset_len": 12})
    with pytest.raises(KeyError, match="consumed"):
        dl.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="shuffle"):
        ResumableDataLoader(ds, batch_size=2, sampler=ResumableSampler(ds, num_replicas=1, rank=0), shuffle=True)


def test_data_module_train_loader_is_stateful(tiny_fm):
    from training_helpers import tiny_datamodule

    dm = tiny_datamodule(tiny_fm, train_size=6, batch_size=2, seed=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader) and isinstance(loader, _Stateful)
    assert loader.sampler.seed == 3
    assert not isinstance(dm.val_dataloader(), ResumableDataLoader)
