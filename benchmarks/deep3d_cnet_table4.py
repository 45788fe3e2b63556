"""Deng'19 Table 4 on synthetic identity sets: per-image mean error, shape averaging, S1-S4.

Trains two C-Nets on the frozen R-Net of a Deep3D checkpoint (element-wise, used for S2/S3/S4,
and a 1-output one for S1) from a LightningCLI-style config, then evaluates the true error of
the neutral identity shape (similarity-aligned, mean per-vertex distance, mm) on test sets.

    .venv/bin/python benchmarks/deep3d_cnet_table4.py [--config experiments/quick/deep3d_cnet.yaml]
        [--rnet-checkpoint runs/deep3d_quick/checkpoints/last.ckpt] [--max-steps N] [--test-sets N]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def instantiate(spec: dict):
    import importlib

    mod, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(mod), name)(**(spec.get("init_args") or {}))


def train(cfg: dict, aggregation: str, max_steps: int | None, log_every: int = 25):
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    cfg = copy.deepcopy(cfg)
    cfg["model"]["init_args"]["aggregation"] = aggregation
    L.seed_everything(cfg.get("seed_everything", 0))
    model = instantiate(cfg["model"])
    dm = instantiate(cfg["data"])
    t0 = time.time()
    curve = []

    class Curve(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step % log_every == 0 or trainer.global_step == 1:
                m = {k.split("/")[1]: round(float(v), 5) for k, v in trainer.callback_metrics.items()
                     if k.startswith("train/")}
                curve.append((trainer.global_step, round(time.time() - t0, 1), m))
                print(f"[{aggregation}] step {trainer.global_step:4d} {time.time() - t0:5.0f}s {m}", flush=True)

    tr = dict(cfg.get("trainer") or {})
    tr.pop("callbacks", None)
    if max_steps:
        tr["max_steps"] = max_steps
    tr.update(logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[Curve()],
              limit_val_batches=0)
    trainer = L.Trainer(**tr)
    trainer.fit(model, dm)
    return model, dm, {"steps": trainer.global_step, "seconds": round(time.time() - t0, 1), "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "experiments/quick/deep3d_cnet.yaml"))
    ap.add_argument("--rnet-checkpoint")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--test-sets", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/deep3d_cnet_table4")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from scipy.stats import wilcoxon

    from b3f_methods.deep3d.evaluate import aggregation_table

    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.rnet_checkpoint:
        cfg["model"]["init_args"]["rnet_checkpoint"] = args.rnet_checkpoint
    cfg["data"]["init_args"]["test_size"] = args.test_sets
    elem, dm, log4 = train(cfg, "S4", args.max_steps)
    glob, _, log1 = train(cfg, "S1", args.max_steps)
    dm.setup("test")
    elem.eval()
    glob.eval()
    table = aggregation_table(elem, dm.test_dataloader(), global_score=glob)
    per = {k: torch.tensor(v) for k, v in table["per_set"].items()}
    tests = {}
    for a, b in (("S4", "shape_averaging"), ("shape_averaging", "per_image_mean"), ("S4", "per_image_mean")):
        d = per[a] - per[b]
        tests[f"{a} < {b}"] = {"mean_diff_mm": round(float(d.mean()), 4),
                                "wilcoxon_p_less": float(wilcoxon(per[a].numpy(), per[b].numpy(),
                                                                  alternative="less").pvalue)}
    print(f"\nTable 4 on {table['sets']} synthetic test sets (5 images each), true error of the neutral shape, mm")
    for row in ("per_image_mean", "shape_averaging", "S1", "S2", "S3", "S4"):
        r = table["rows"][row]
        print(f"  {row:16s} {r['mean']:.4f} +- {r['std']:.4f}")
    print(json.dumps(tests, indent=2))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "result.json").write_text(json.dumps(
        {"table": table["rows"], "tests": tests, "train_S4": log4, "train_S1": log1, "config": cfg}, indent=2))


if __name__ == "__main__":
    main()
