"""Trains the tiny R-Net with Lightning DDP on CPU (gloo) and saves, per rank, the final state
dict, the loss history and the sample ids seen: ``python ddp_worker.py OUT_DIR [--steps N]
[--devices D]``. Run by test_ddp.py in a subprocess: Lightning's ``ddp`` strategy launches the
other ranks by re-running this script (it cannot re-run pytest)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=2, help="per rank")
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core per rank

    import lightning as L
    from training_helpers import (
        QUIET,
        History,
        install_tiny_facemodel,
        state_of,
        tiny_datamodule,
        tiny_deep3d,
    )

    fm, _ = install_tiny_facemodel()
    L.seed_everything(0, verbose=False)
    model = tiny_deep3d(lr=args.lr)
    dm = tiny_datamodule(fm, args.train_size, args.batch_size)
    hist = History()
    trainer = L.Trainer(devices=args.devices, strategy="ddp", max_steps=args.steps,
                        enable_checkpointing=False, callbacks=[hist], **QUIET)
    trainer.fit(model, dm)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"rank": trainer.global_rank, "world_size": trainer.world_size, "state": state_of(model),
                "steps": hist.steps, "losses": hist.losses, "ids": hist.ids},
               args.out / f"rank{trainer.global_rank}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
