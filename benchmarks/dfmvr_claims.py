"""DF-MVR claims on synthetic triplets (paired, same test samples; docs/methods/dfmvr.md).

    # 1. train a variant (resumable: state saved to --out/<variant>.pt, continued when present)
    OMP_NUM_THREADS=2 python benchmarks/dfmvr_claims.py train --variant v6 --seconds 200
    # 2. compare (multi- vs single-view input of one model; error vs side-view yaw; variants)
    OMP_NUM_THREADS=2 python benchmarks/dfmvr_claims.py views --variant v6 --n 40
    OMP_NUM_THREADS=2 python benchmarks/dfmvr_claims.py yaws --variant v6 --n 40
    OMP_NUM_THREADS=2 python benchmarks/dfmvr_claims.py variants --variant v6 --others v3,v4,v5 --n 40

Variants are overrides of the quick config (experiments/quick/dfmvr_v{1..6}.yaml): same data, batch,
optimiser and budget. Error: per-sample true error (mm, mean over the model's vertices after
the similarity alignment) of the shared shape against the GT mesh. Input landmarks (the parse
channel) are the synthetic samples' exact 68 points (not a detector): the comparisons are paired
on identical inputs. Test triplets: the synthetic engine's ``test`` split (seeded).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "quick"


def load_config(variant: str) -> dict:
    """The quick config (``quick``) or a Table IV variant ``v1``..``v6``, its ``__base__``
    layers resolved (experiments/quick/dfmvr_v<k>.yaml override experiments/quick/dfmvr.yaml)."""
    from benchmark3dface.training.configs import resolve_config

    return resolve_config(CONFIGS / ("dfmvr.yaml" if variant == "quick" else f"dfmvr_{variant}.yaml"))


def build(variant: str):
    from b3f_methods.dfmvr import DFMVR

    cfg = load_config(variant)
    args = dict(cfg["model"]["init_args"])
    args["lr_schedule"] = "constant"
    torch.manual_seed(0)
    return DFMVR(**args), cfg


def train(variant: str, seconds: float, out: Path, max_steps: int) -> None:
    from b3f_methods.dfmvr.method import skip_nonfinite_grads
    from benchmark3dface.data.datamodules import SyntheticDataModule

    model, cfg = build(variant)
    d = dict(cfg["data"]["init_args"])
    d["num_workers"] = 0
    path = out / f"{variant}.pt"
    step = 0
    opt = torch.optim.Adam(model.parameters(), lr=model.hparams.lr)
    if path.is_file():
        st = torch.load(path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
    dm = SyntheticDataModule(**{**d, "seed": step})  # a different stream per resumed piece
    dm.setup("fit")
    model.train()
    t0 = time.time()
    skipped = 0
    for batch in dm.train_dataloader():
        if time.time() - t0 > seconds or step >= max_steps:
            break
        loss, terms, _ = model.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        if skip_nonfinite_grads(model.parameters()):
            skipped += 1
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        step += 1
        if step % 25 == 0:
            print(f"{variant} step {step} loss {float(loss):.3f} " +
                  " ".join(f"{k}={float(v):.3f}" for k, v in terms.items()), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, path)
    print(f"{variant}: {step} steps total ({skipped} skipped: non-finite gradients), this piece {time.time() - t0:.0f} s -> {path}")


def load_trained(variant: str, out: Path):
    model, cfg = build(variant)
    st = torch.load(out / f"{variant}.pt", weights_only=False)
    model.load_state_dict(st["model"])
    return model.eval(), st["step"]


def test_batches(n: int, size: int, yaws=None, batch: int = 10):
    from benchmark3dface.data.collate import collate_samples
    from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset

    opts = {"mode": "multiview", "image_size": size}
    if yaws is not None:
        opts["view_yaws"] = list(yaws)
    ds = SyntheticFaceDataset(opts, split="test", size=n)
    for i in range(0, n, batch):
        yield collate_samples([ds[j] for j in range(i, min(n, i + batch))])


@torch.no_grad()
def errors(model, n: int, yaws=None, single: bool = False) -> np.ndarray:
    from benchmark3dface.data.sample import Sample
    from benchmark3dface.metrics.true_error import aligned_vertex_errors

    out = []
    size = int(model.hparams.image_size)
    for b in test_batches(n, size, yaws):
        if single:
            f = model.hparams.front_view
            inp = Sample(kind="single", sample_id=b.sample_id, image=b.image[:, f], lm68=b.lm68[:, f])
        else:
            inp = Sample(kind="multiview", sample_id=b.sample_id, image=b.image, lm68=b.lm68)
        coeffs, _ = model.predict_coeffs(inp)
        p = model.facemodel.layout.split(coeffs[:, 0])
        pred = model.facemodel.shape(p["id"], p["exp"])
        out.append(aligned_vertex_errors(pred, b.vertices[:, 0].to(pred)).mean(-1).numpy())
    return np.concatenate(out)


def paired(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    from scipy.stats import wilcoxon

    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.all():  # non-finite outputs (a diverged model): reported, compared on the rest
        print(f"  non-finite errors: {name_a} {int((~np.isfinite(a)).sum())}, {name_b} {int((~np.isfinite(b)).sum())} "
              f"of {len(a)}; compared on the {int(ok.sum())} samples finite in both")
        a, b = a[ok], b[ok]
    p_less = wilcoxon(a, b, alternative="less").pvalue
    p_two = wilcoxon(a, b).pvalue
    print(f"{name_a}: {a.mean():.3f} +- {a.std():.3f} mm | {name_b}: {b.mean():.3f} +- {b.std():.3f} mm | "
          f"n={len(a)} | {name_a} < {name_b}: Wilcoxon one-sided p={p_less:.3g} (two-sided p={p_two:.3g}) | "
          f"{name_a} better on {(a < b).mean() * 100:.0f}% of samples")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("train", "views", "yaws", "variants"))
    ap.add_argument("--variant", default="v6")
    ap.add_argument("--others", default="v3,v4,v5")
    ap.add_argument("--seconds", type=float, default=200.0)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("/tmp/dfmvr/claims"))
    a = ap.parse_args(argv)
    if a.what == "train":
        train(a.variant, a.seconds, a.out, a.max_steps)
        return 0
    model, steps = load_trained(a.variant, a.out)
    print(f"{a.variant}: {steps} training steps; n={a.n} synthetic test triplets")
    if a.what == "views":
        paired("multi-view", errors(model, a.n), "single-view (front only)", errors(model, a.n, single=True))
    elif a.what == "yaws":
        res = {y: errors(model, a.n, (-y, 0.0, y)) for y in (10.0, 20.0, 30.0, 45.0)}
        for y, e in res.items():
            print(f"side views at +-{y:.0f} deg: {np.nanmean(e):.3f} +- {np.nanstd(e):.3f} mm "
                  f"({int((~np.isfinite(e)).sum())} non-finite)")
        from scipy.stats import friedmanchisquare

        ok = np.all([np.isfinite(e) for e in res.values()], axis=0)
        print(f"Friedman test across the 4 yaws (same {int(ok.sum())} faces, finite at every yaw): "
              f"p={friedmanchisquare(*(e[ok] for e in res.values())).pvalue:.3g}")
        paired("+-10 deg", res[10.0], "+-45 deg", res[45.0])
    else:
        base = errors(model, a.n)
        for o in a.others.split(","):
            m2, s2 = load_trained(o, a.out)
            print(f"{o}: {s2} training steps")
            paired(a.variant, base, o, errors(m2, a.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
