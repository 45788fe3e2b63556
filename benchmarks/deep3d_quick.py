"""Quick-profile Deng'19 R-Net: train from a LightningCLI-style config, then compare the true
error on synthetic test samples with the mean-face baseline (paired Wilcoxon).

    .venv/bin/python benchmarks/deep3d_quick.py [--config experiments/quick/deep3d.yaml]
        [--max-steps N] [--test N] [--set model.init_args.lr=1e-3 ...] [--eval-checkpoint CKPT]

Prints the loss curve (every 25 steps), the test errors and the relative improvement, and
``group_substitution_mm``: the true error of the R-Net's identity with the GT expression (vs the
mean identity with the GT expression) and of its expression with the GT identity (vs zero
expression) -- which output group helps. ``--eval-checkpoint CKPT`` skips training and
evaluates a saved R-Net (e.g. the benchmark's ``runs/benchmark/deep3d/<hash>/checkpoints/last.ckpt``).
Uses 1 torch thread + the config's data worker (2 cores; shared machine).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def instantiate(spec: dict):
    mod, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(mod), name)(**(spec.get("init_args") or {}))


def set_path(cfg: dict, dotted: str, value: str) -> None:
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = yaml.safe_load(value)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "experiments/quick/deep3d.yaml"))
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--test", type=int, default=200, help="test samples")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the data worker takes the 2nd core)")
    ap.add_argument("--set", action="append", default=[], help="dotted.key=value override")
    ap.add_argument("--out", default="runs/deep3d_quick")
    ap.add_argument("--resume", help="checkpoint to continue from (chained < 10 min runs; raise trainer.max_time)")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--eval-checkpoint", help="skip training: evaluate this checkpoint (e.g. the benchmark's R-Net)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import lightning as L
    from lightning.pytorch.callbacks import Callback
    from scipy.stats import wilcoxon

    from b3f_methods.baselines import MeanFace
    from b3f_methods.deep3d.evaluate import true_error

    cfg = yaml.safe_load(Path(args.config).read_text())
    for kv in args.set:
        k, _, v = kv.partition("=")
        set_path(cfg, k, v)
    if args.max_steps:
        cfg["trainer"]["max_steps"] = args.max_steps
    L.seed_everything(cfg.get("seed_everything", 0))
    if args.eval_checkpoint:
        mod, _, name = cfg["model"]["class_path"].rpartition(".")
        model = getattr(importlib.import_module(mod), name).load_from_checkpoint(args.eval_checkpoint,
                                                                                 map_location="cpu", weights_only=True)
    else:
        model = instantiate(cfg["model"])
    data_cfg = copy.deepcopy(cfg["data"])
    data_cfg["init_args"]["test_size"] = args.test
    dm = instantiate(data_cfg)

    curve: list[tuple[int, float, dict]] = []

    class Curve(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step % 25 == 0 or trainer.global_step == 1:
                m = {k.split("/")[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
                curve.append((trainer.global_step, time.time() - t0, m))
                print(f"step {trainer.global_step:5d}  {time.time() - t0:6.0f}s  " +
                      "  ".join(f"{k} {v:.4g}" for k, v in m.items()), flush=True)

    tr_cfg = dict(cfg.get("trainer") or {})
    callbacks = [Curve()] + [instantiate(c) for c in tr_cfg.pop("callbacks", [])]
    tr_cfg.update(logger=False, enable_progress_bar=False, callbacks=callbacks, default_root_dir=args.out)
    t0 = time.time()
    if args.eval_checkpoint:
        steps, train_s = int(torch.load(args.eval_checkpoint, map_location="cpu", weights_only=True)
                             .get("global_step", -1)), None
    else:
        trainer = L.Trainer(**tr_cfg)
        trainer.fit(model, dm, ckpt_path=args.resume, weights_only=True)
        train_s, steps = time.time() - t0, trainer.global_step
        Path(args.out).mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(Path(args.out) / f"step{steps}.ckpt"))
        print(f"trained {steps} steps in {train_s:.0f}s; warnings: {model.config_warnings}")

    if args.no_eval:
        return
    # ---- true error on the test split vs the mean face --------------------------------
    dm.setup("test")
    base = MeanFace()
    model.eval()
    e_net, e_mean = [], []
    # which output group helps: the R-Net's identity / expression combined with the GT or the
    # mean (zero) of the other group, against the GT / zero combinations
    fm, lay = model.facemodel, model.facemodel.layout
    groups = {"rnet_id+gt_exp": ("net", "gt"), "zero_id+gt_exp": ("zero", "gt"),
              "gt_id+rnet_exp": ("gt", "net"), "gt_id+zero_exp": ("gt", "zero")}
    e_groups: dict[str, list] = {k: [] for k in groups}
    for batch in dm.test_dataloader():
        recs = model.reconstruct(batch)
        brecs = base.reconstruct(batch)
        gt = batch.vertices
        e_net.append(true_error(torch.stack([r.face.vertices for r in recs]), gt))
        e_mean.append(true_error(torch.stack([r.face.vertices for r in brecs]), gt))
        if batch.coeffs is not None:
            net_c = torch.stack([r.extras["coeffs"] for r in recs]).float()
            src = {"net": net_c, "gt": batch.coeffs.float(), "zero": torch.zeros_like(net_c)}
            for k, (gi, ge) in groups.items():
                shape = fm.shape(src[gi][:, lay.slice("id")], src[ge][:, lay.slice("exp")])
                e_groups[k].append(true_error(shape, gt))
    e_net, e_mean = torch.cat(e_net), torch.cat(e_mean)
    rel = 1 - float(e_net.mean() / e_mean.mean())
    p = float(wilcoxon(e_net.numpy(), e_mean.numpy(), alternative="less").pvalue)
    res = {"steps": steps, "train_seconds": None if train_s is None else round(train_s, 1),
           "test_samples": int(e_net.numel()),
           "rnet_mm": round(float(e_net.mean()), 4), "meanface_mm": round(float(e_mean.mean()), 4),
           "rnet_median_mm": round(float(e_net.median()), 4), "meanface_median_mm": round(float(e_mean.median()), 4),
           "relative_improvement": round(rel, 4), "wilcoxon_p_less": p,
           "wins": int((e_net < e_mean).sum()),
           "group_substitution_mm": {k: round(float(torch.cat(v).mean()), 4) for k, v in e_groups.items() if v}}
    print(json.dumps(res, indent=2))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "result.json").write_text(json.dumps({"result": res, "curve": curve, "config": cfg}, indent=2))


if __name__ == "__main__":
    main()
