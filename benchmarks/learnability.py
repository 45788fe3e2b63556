"""Learnability instrument: how much of each target a backbone trained from scratch reads from the
synthetic images in a given number of steps when it is given the ground truth directly (no
rendering, no weak supervision) -- an upper bound for a weakly supervised R-Net of the same
backbone and budget.

    .venv/bin/python benchmarks/learnability.py [--backbone resnet18] [--size 64] [--steps 600]
        [--batch 16] [--lr 1e-3] [--targets angles,exp3,lm68,shape] [--test 200]
        [--options '{"pose_prior": "uniform"}'] [--json OUT.json]

The network is the R-Net trunk (the same timm backbone and input normalisation as
methods/deep3d/networks.py, globally average-pooled) with one zero-initialised linear head per
target group, so no two groups share an output:
- ``pose`` head (3 outputs): the Euler angles (pitch, yaw, roll; rad) -- target ``angles``;
- ``shape`` head (K_id + K_exp outputs): identity then expression coefficients (prior units) --
  targets ``exp3`` (its first 3 expression outputs; expression 0 = jaw opening, 3.0 mm of true
  error per prior sigma for the procedural model) and ``shape`` (the vertices decoded from all of
  its outputs, mm, every 40th vertex, against the GT vertices);
- ``lm68`` head (136 outputs): the 68 image landmarks, x and y in [-1, 1] -- target ``lm68``.
It is trained with Adam (cosine schedule) on the sum of the per-target MSEs, each divided by
that target's variance on the first 64 training samples (so every target weighs the same in the
loss; the variance is used for nothing else).

Explained variance (:func:`explained_variance`) = 1 - SSE / SST over a set of samples, where SST
is the target's squared deviation from its mean *over the same samples* (1 = exact, 0 = no
better than predicting that set's mean, < 0 = worse). Printed every 50 steps on the last 50
training batches and at the end on ``--test`` held-out test images; the final line (JSON) also
holds the true error (mm, similarity-aligned mean vertex distance) of the decoded shape head vs
the mean face on the same test images, with the paired Wilcoxon p-value. 1 torch thread + 1 data
worker (the quick profile's setting). Results and the planned curves: docs/learnability.md.
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

TARGETS = ("angles", "exp3", "lm68", "shape")
#: target -> the head whose outputs it reads (each head's outputs belong to one target group)
HEAD_OF = {"angles": "pose", "exp3": "shape", "shape": "shape", "lm68": "lm68"}
#: the ``shape`` target compares every SHAPE_STRIDE-th vertex
SHAPE_STRIDE = 40


# ---------------------------------------------------------------------------------- metrics
def explained_variance(pred: Tensor, target: Tensor) -> float:
    """Fraction of the target's variance that ``pred`` explains, pooled over the target's columns.

    ``1 - sum((pred - target)^2) / sum((target - mean(target))^2)``, with the mean taken per
    column over the rows given (the samples being scored: the test set's own mean and variance,
    never a training set's). 1 = exact; 0 = predicting these samples' mean; < 0 = worse.

    Args:
        pred, target: (N, D) or (N,) tensors, N >= 2 samples, same shape.
    Raises:
        ValueError: shapes differ, fewer than 2 samples, or the target is constant.
    """
    if pred.shape != target.shape:
        raise ValueError(f"explained_variance: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if target.dim() == 0 or target.shape[0] < 2:
        raise ValueError(f"explained_variance: need >= 2 samples, got shape {tuple(target.shape)}")
    p, y = pred.double().reshape(len(pred), -1), target.double().reshape(len(target), -1)
    sst = float(((y - y.mean(0)) ** 2).sum())
    if sst <= 0.0:
        raise ValueError("explained_variance: the target is constant over these samples (zero variance)")
    return 1.0 - float(((p - y) ** 2).sum()) / sst


def target_variance(target: Tensor) -> float:
    """Mean squared deviation of an (N, D) target from its per-column mean (pooled over D)."""
    y = target.double().reshape(len(target), -1)
    return float(((y - y.mean(0)) ** 2).mean())


# ---------------------------------------------------------------------------------- network
def head_sizes(targets: list[str] | tuple[str, ...], layout) -> dict[str, int]:
    """``{head name: outputs}`` for the heads the targets need (``layout``: the face model's
    coefficient layout, for the identity and expression sizes)."""
    sizes = {"pose": 3, "shape": layout.id + layout.exp, "lm68": 136}
    return {h: sizes[h] for h in dict.fromkeys(HEAD_OF[t] for t in targets)}


class MultiHeadNet(nn.Module):
    """A shared trunk with one linear head per target group (zero-initialised: training starts
    from the mean of every target, like R-Net's head).

    Args:
        heads: ``{name: outputs}`` (see :func:`head_sizes`).
        backbone: a timm model name with ``features_only`` support (built without weights), or
        trunk: any module mapping (B, 3, H, W) images in [0, 1] to (B, feature_dim) features
            (then ``feature_dim`` is required). Exactly one of the two.
    """

    def __init__(self, heads: dict[str, int], backbone: str | None = "resnet18", trunk: nn.Module | None = None,
                 feature_dim: int | None = None):
        super().__init__()
        if (trunk is None) == (backbone is None):
            raise ValueError("MultiHeadNet: give exactly one of backbone and trunk")
        if trunk is None:
            import timm

            self.backbone = timm.create_model(backbone, pretrained=False, features_only=True)
            feature_dim = self.backbone.feature_info.channels()[-1]
            self.trunk = None
        else:
            if feature_dim is None:
                raise ValueError("MultiHeadNet: a custom trunk needs feature_dim")
            self.backbone, self.trunk = None, trunk
        self.heads = nn.ModuleDict({name: nn.Linear(int(feature_dim), int(n)) for name, n in heads.items()})
        for head in self.heads.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def features(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, feature_dim) pooled trunk features."""
        if self.trunk is not None:
            return self.trunk(image)
        from b3f_methods.deep3d.networks import normalize_imagenet

        return self.backbone(normalize_imagenet(image))[-1].mean((2, 3))

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        f = self.features(image)
        return {name: head(f) for name, head in self.heads.items()}


# ---------------------------------------------------------------------------------- targets
def decode_subsampled(fm, stride: int = SHAPE_STRIDE) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(vertex indices, mean, identity basis, expression basis) of every ``stride``-th vertex."""
    sub = torch.arange(0, fm.id_basis.shape[1], stride)
    return sub, fm.mean_shape[sub], fm.id_basis[:, sub], fm.exp_basis[:, sub]


def target_pairs(batch, outs: dict[str, Tensor], targets, layout, image_size: int,
                 decoded: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """``{target: (prediction (B, D), truth (B, D))}`` for a batch and the network's head outputs.

    Truths: ``angles`` the GT Euler angles (rad); ``exp3`` the first 3 GT expression coefficients;
    ``lm68`` the GT landmarks (px) mapped to [-1, 1] by ``image_size``; ``shape`` the GT vertices
    (mm) at the indices of ``decoded`` (:func:`decode_subsampled`, required for ``shape``).
    """
    out: dict[str, tuple[Tensor, Tensor]] = {}
    g = batch.coeffs
    e0 = layout.slice("exp").start
    if "angles" in targets:
        out["angles"] = (outs["pose"], g[:, layout.slice("angles")])
    if "exp3" in targets:
        out["exp3"] = (outs["shape"][:, layout.id:layout.id + 3], g[:, e0:e0 + 3])
    if "lm68" in targets:
        out["lm68"] = (outs["lm68"], (batch.lm68 / image_size * 2 - 1).flatten(1))
    if "shape" in targets:
        sub, mean_sub, id_sub, exp_sub = decoded
        ids, exs = outs["shape"][:, :layout.id], outs["shape"][:, layout.id:]
        v = (mean_sub + torch.einsum("bk,knc->bnc", ids, id_sub) + torch.einsum("bk,knc->bnc", exs, exp_sub))
        out["shape"] = (v.flatten(1), batch.vertices[:, sub].flatten(1))
    return out


def _cat(batches) -> SimpleNamespace:
    """A minimal concatenation of the fields the targets read."""
    return SimpleNamespace(coeffs=torch.cat([b.coeffs for b in batches]), lm68=torch.cat([b.lm68 for b in batches]),
                           vertices=torch.cat([b.vertices for b in batches]))


# ---------------------------------------------------------------------------------- run
def train_step(net: MultiHeadNet, opt: torch.optim.Optimizer, batch, targets, layout, image_size: int,
               var: dict[str, float], decoded=None) -> dict[str, tuple[Tensor, Tensor]]:
    """One Adam step on ``sum_t MSE_t / var_t``; returns the batch's detached (pred, truth) pairs."""
    pairs = target_pairs(batch, net(batch.image.float()), targets, layout, image_size, decoded)
    loss = sum(((p - y) ** 2).mean() / var[t] for t, (p, y) in pairs.items())
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {t: (p.detach(), y.detach()) for t, (p, y) in pairs.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--options", default="{}", help="SynthConfig overrides as JSON (e.g. pose_prior, yaw_max)")
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise SystemExit(f"--targets: choose from {TARGETS}, got {args.targets!r}")
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--options: not JSON ({e})")
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from scipy.stats import wilcoxon

    from b3f_methods.deep3d.evaluate import true_error
    from benchmark3dface.data.datamodules import SyntheticDataModule
    from benchmark3dface.facemodel import load_facemodel

    fm = load_facemodel("procedural")
    lay = fm.layout
    decoded = decode_subsampled(fm)
    try:
        dm = SyntheticDataModule(mode="single", image_size=args.size, train_size=args.steps * args.batch + 1,
                                 val_size=args.batch, test_size=args.test, batch_size=args.batch, num_workers=1,
                                 options=options)
        dm.setup("fit")
    except ValueError as e:  # e.g. an unknown synthetic option
        raise SystemExit(f"--options {args.options}: {e}")
    net = MultiHeadNet(head_sizes(targets, lay), backbone=args.backbone)
    opt = torch.optim.Adam(net.parameters(), args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)

    # loss normalisers: each target's variance on the first 4 training batches
    it = iter(dm.train_dataloader())
    first = [next(it) for _ in range(min(4, args.steps))]
    stream = _cat(first)
    zero = {h: torch.zeros(len(stream.coeffs), n) for h, n in head_sizes(targets, lay).items()}
    var = {t: target_variance(y)
           for t, (_, y) in target_pairs(stream, zero, targets, lay, args.size, decoded).items()}
    print(f"backbone {args.backbone} @ {args.size} px, {args.steps} steps x {args.batch}, heads "
          f"{head_sizes(targets, lay)}; loss normalisers " + ", ".join(f"{t} {v:.4g}" for t, v in var.items()),
          flush=True)

    window: dict[str, list[tuple[Tensor, Tensor]]] = {t: [] for t in targets}
    t0 = time.time()
    net.train()
    for step in range(args.steps):
        batch = first[step] if step < len(first) else next(it)
        for t, pair in train_step(net, opt, batch, targets, lay, args.size, var, decoded).items():
            window[t].append(pair)
        sched.step()
        if (step + 1) % 50 == 0:
            ev = {t: explained_variance(torch.cat([p for p, _ in w]), torch.cat([y for _, y in w]))
                  for t, w in window.items()}
            print(f"step {step + 1:5d} {time.time() - t0:6.0f}s  train explained (last 50 batches): "
                  + "  ".join(f"{t} {v:+.3f}" for t, v in ev.items()), flush=True)
            window = {t: [] for t in targets}
    train_s = time.time() - t0

    dm.setup("test")
    net.eval()
    preds: dict[str, list[Tensor]] = {t: [] for t in targets}
    truths: dict[str, list[Tensor]] = {t: [] for t in targets}
    e_net, e_mean = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            outs = net(batch.image.float())
            for t, (p, y) in target_pairs(batch, outs, targets, lay, args.size, decoded).items():
                preds[t].append(p)
                truths[t].append(y)
            if "shape" in outs:
                ids, exs = outs["shape"][:, :lay.id], outs["shape"][:, lay.id:]
                e_net.append(true_error(fm.shape(ids, exs), batch.vertices))
                e_mean.append(true_error(fm.shape(0 * ids, 0 * exs), batch.vertices))
    res: dict[str, Any] = {
        "backbone": args.backbone, "size": args.size, "steps": args.steps, "batch": args.batch, "lr": args.lr,
        "options": options, "train_s": round(train_s),
        "test_samples": sum(len(y) for y in truths[targets[0]]),
        "test_explained": {t: round(explained_variance(torch.cat(preds[t]), torch.cat(truths[t])), 3)
                           for t in targets}}
    if e_net:
        en, em = torch.cat(e_net).double(), torch.cat(e_mean).double()
        res.update({"test_true_error_mm": round(float(en.mean()), 3),
                    "meanface_true_error_mm": round(float(em.mean()), 3),
                    "vs_meanface_pct": round(100.0 * float(en.mean() / em.mean() - 1.0), 1),
                    "wins_vs_meanface": int((en < em).sum()),
                    "wilcoxon_p": float(wilcoxon(en.numpy(), em.numpy()).pvalue)})
    print(json.dumps(res), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
