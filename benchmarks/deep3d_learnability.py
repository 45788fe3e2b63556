"""Supervised upper bound for the quick-profile R-Net: how much of each target a backbone trained
from scratch can read from the synthetic images in a given number of steps, when it is given the
ground truth directly (no rendering, no weak supervision).

    .venv/bin/python benchmarks/deep3d_learnability.py [--backbone resnet18] [--size 64]
        [--steps 600] [--targets angles,exp3,lm68,shape] [--options '{"yaw_max": 30}']

The network is R-Net (methods/deep3d/networks.py, zero-initialised head) trained with Adam 1e-3
(cosine) on the sum of the per-target losses, each normalised by its variance on the training
stream (so every target weighs the same):
- ``angles``: the 3 Euler angles (rad);
- ``exp3``: the first 3 expression coefficients (component 0 = jaw opening: 3.0 mm of true error
  per prior sigma for the procedural model);
- ``lm68``: the 68 image landmarks in [-1, 1];
- ``shape``: the vertices decoded from the identity + expression outputs (mm, every 40th vertex)
  against the GT vertices.

Prints every 50 steps the fraction of each target's variance explained on the last 50 batches
(1 - MSE / Var; 0 = predicting the mean, 1 = exact), and at the end the same on held-out test
images plus the true error of the decoded shape vs the mean face. If a target is not learned
under direct supervision, the weakly supervised hybrid loss cannot learn it in that budget either.
1 torch thread + 1 data worker (the quick profile's setting).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from benchmark3dface.data.datamodules import SyntheticDataModule
from benchmark3dface.facemodel import load_facemodel

TARGETS = ("angles", "exp3", "lm68", "shape")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--options", default="{}", help="SynthConfig overrides as JSON (e.g. yaw_max)")
    ap.add_argument("--test", type=int, default=200)
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise SystemExit(f"--targets: choose from {TARGETS}, got {args.targets!r}")
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from b3f_methods.deep3d.evaluate import true_error
    from b3f_methods.deep3d.networks import RNet

    fm = load_facemodel("procedural")
    lay = fm.layout
    sub = torch.arange(0, fm.id_basis.shape[1], 40)
    # the "shape" target decodes only the vertices it compares (every 40th)
    mean_sub, id_sub, exp_sub = fm.mean_shape[sub], fm.id_basis[:, sub], fm.exp_basis[:, sub]
    dm = SyntheticDataModule(mode="single", image_size=args.size, train_size=args.steps * args.batch + 1,
                             val_size=args.batch, test_size=args.test, batch_size=args.batch, num_workers=1,
                             options=json.loads(args.options))
    dm.setup("fit")
    net = RNet(args.backbone, lay.size, zero_init_head=True)
    opt = torch.optim.Adam(net.parameters(), args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    e0 = lay.slice("exp").start

    def pred_and_truth(batch, c):
        out = {}
        g = batch.coeffs
        if "angles" in targets:
            out["angles"] = (c[:, lay.slice("angles")], g[:, lay.slice("angles")])
        if "exp3" in targets:
            out["exp3"] = (c[:, e0:e0 + 3], g[:, e0:e0 + 3])
        if "lm68" in targets:  # the head's first 136 outputs read as landmarks
            out["lm68"] = (c[:, :136], (batch.lm68 / args.size * 2 - 1).flatten(1))
        if "shape" in targets:
            v = (mean_sub + torch.einsum("bk,knc->bnc", c[:, lay.slice("id")], id_sub)
                 + torch.einsum("bk,knc->bnc", c[:, lay.slice("exp")], exp_sub))
            out["shape"] = (v.flatten(1), batch.vertices[:, sub].flatten(1))
        return out

    # target variances from a few training batches (normalises the losses and the report)
    it = iter(dm.train_dataloader())
    first = [next(it) for _ in range(4)]
    var = {}
    for t, (_, y) in pred_and_truth(_cat(first), torch.zeros(first[0].coeffs.shape[0] * 4, lay.size)).items():
        var[t] = float(((y - y.mean(0)) ** 2).mean())
    print(f"backbone {args.backbone} @ {args.size} px, {args.steps} steps x {args.batch}; variances "
          + ", ".join(f"{t} {v:.4g}" for t, v in var.items()), flush=True)

    sse = {t: 0.0 for t in targets}
    n, t0 = 0, time.time()
    for step in range(args.steps):
        batch = first[step] if step < len(first) else next(it)
        c = net(batch.image.float())[0]
        terms = {t: ((p - y) ** 2).mean() for t, (p, y) in pred_and_truth(batch, c).items()}
        loss = sum(v / var[t] for t, v in terms.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        for t, v in terms.items():
            sse[t] += float(v.detach())
        n += 1
        if (step + 1) % 50 == 0:
            print(f"step {step + 1:5d} {time.time() - t0:6.0f}s  explained: "
                  + "  ".join(f"{t} {1 - sse[t] / n / var[t]:+.3f}" for t in targets), flush=True)
            sse = {t: 0.0 for t in targets}
            n = 0

    dm.setup("test")
    net.eval()
    sse = {t: 0.0 for t in targets}
    nb, e_net, e_mean = 0, [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            c = net(batch.image.float())[0]
            for t, (p, y) in pred_and_truth(batch, c).items():
                sse[t] += float(((p - y) ** 2).mean())
            nb += 1
            ids, exs = c[:, lay.slice("id")], c[:, lay.slice("exp")]
            e_net.append(true_error(fm.shape(ids, exs), batch.vertices))
            e_mean.append(true_error(fm.shape(0 * ids, 0 * exs), batch.vertices))
    res = {"backbone": args.backbone, "size": args.size, "steps": args.steps, "train_s": round(time.time() - t0),
           "test_explained": {t: round(1 - sse[t] / nb / var[t], 3) for t in targets},
           "test_true_error_mm": round(float(torch.cat(e_net).mean()), 3),
           "meanface_true_error_mm": round(float(torch.cat(e_mean).mean()), 3)}
    print(json.dumps(res))


def _cat(batches):
    """A minimal concatenation of the fields the targets read."""
    from types import SimpleNamespace

    return SimpleNamespace(coeffs=torch.cat([b.coeffs for b in batches]), lm68=torch.cat([b.lm68 for b in batches]),
                           vertices=torch.cat([b.vertices for b in batches]))


if __name__ == "__main__":
    main()
