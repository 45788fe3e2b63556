"""R-Net trained with Lightning DDP on two CPU processes (gloo): the loss falls on each rank,
both ranks end with the same weights, and the ranks read disjoint shards of every batch.

Lightning's ``ddp`` strategy starts the second rank by re-running the launching script, so the
training runs in ddp_worker.py (a subprocess), which saves each rank's final state dict, loss
history and sample ids."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
STEPS, TRAIN_SIZE, BATCH, RANKS = 24, 4, 2, 2  # one optimizer step per epoch: all 4 samples, 2 per rank


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for var in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK"):
        env.pop(var, None)  # a fresh job: Lightning picks a free port
    cmd = [sys.executable, str(HERE / "ddp_worker.py"), str(out), "--steps", str(STEPS), "--devices", str(RANKS),
           "--train-size", str(TRAIN_SIZE), "--batch-size", str(BATCH)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"DDP training failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    runs = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]
    assert [r["rank"] for r in runs] == list(range(RANKS)) and all(r["world_size"] == RANKS for r in runs)
    return runs


def test_loss_falls_on_every_rank(ddp_run):
    for run in ddp_run:
        losses = run["losses"]
        assert run["steps"] == list(range(1, STEPS + 1)) and len(losses) == STEPS
        first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
        assert last < 0.6 * first, f"rank {run['rank']}: loss {first:.3f} -> {last:.3f}"


def test_ranks_end_with_identical_weights(ddp_run):
    a, b = (r["state"] for r in ddp_run)
    assert a.keys() == b.keys()
    # BatchNorm running statistics are per-rank (DDP broadcasts rank 0's before each forward,
    # so they differ by the last step's update; checkpoints hold rank 0's); SyncBatchNorm
    # (Trainer(sync_batchnorm=True)) is GPU-only.
    bn_stats = {k for k in a if k.endswith(("running_mean", "running_var"))}
    assert bn_stats, "expected BatchNorm statistics in the backbone"
    differ = [k for k in a if k not in bn_stats and not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ between ranks, e.g. {differ[:3]}"
    params = [k for k in a if k.endswith((".weight", ".bias")) and k not in bn_stats]
    assert len(params) > 20


def test_ranks_read_disjoint_shards(ddp_run):
    ids0, ids1 = ddp_run[0]["ids"], ddp_run[1]["ids"]
    assert len(ids0) == len(ids1) == STEPS
    every = set()
    for step, (a, b) in enumerate(zip(ids0, ids1)):
        assert len(a) == len(b) == BATCH
        assert not set(a) & set(b), f"step {step}: both ranks read {set(a) & set(b)}"
        assert len(set(a) | set(b)) == TRAIN_SIZE  # together: the whole set each step (one step per epoch)
        every |= set(a) | set(b)
    assert len(every) == TRAIN_SIZE
    assert ids0[0] != ids0[1] or ids0[1] != ids0[2], "the per-epoch shuffle never changed the shards"
