"""Table-2-style claim measurements for gcnsemi on the quick budget (docs/methods/gcnsemi.md).

Each piece runs in a few minutes on a 2-core CPU and writes its result to ``--out``; ``compare``
pairs them (scipy.stats.wilcoxon on the same held-out samples)::

    python -m b3f_methods.gcnsemi.claims train full          --out /tmp/gcn/claims
    python -m b3f_methods.gcnsemi.claims train no_recognition --out /tmp/gcn/claims
    python -m b3f_methods.gcnsemi.claims train no_adversarial --out /tmp/gcn/claims
    python -m b3f_methods.gcnsemi.claims train labelled_only  --out /tmp/gcn/claims
    python -m b3f_methods.gcnsemi.claims capacity             --out /tmp/gcn/claims
    python -m b3f_methods.gcnsemi.claims compare              --out /tmp/gcn/claims

Variants share the seed, the quick config's model, the step count and the *same* labelled
samples (a labelled source of ``LABELLED_SETS`` sets); ``labelled_only`` drops the unlabelled
half of every batch (fraction 1, cycling the same labelled sets). Per variant, on held-out
people (the synthetic ``test`` split): true error (mm, mean per-vertex after similarity
alignment) of single images and of set identities (mean identity code, neutral expression,
against the neutral GT), identity-verification AUC of the identity code (cosine similarity of
all image pairs, same vs different person) and the spread of the decoded identity shapes
within a set (mean per-vertex distance to the set's mean shape, mm).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = {
    "full": {"loss_weights": {}, "labelled_fraction": 0.5},
    "no_recognition": {"loss_weights": {"recognition": 0.0}, "labelled_fraction": 0.5},
    "no_adversarial": {"loss_weights": {"adversarial": 0.0}, "labelled_fraction": 0.5},
    "labelled_only": {"loss_weights": {}, "labelled_fraction": 1.0},
}
LABELLED_SETS = 45
QUICK_MODEL = dict(backbone="resnet18", image_size=64, factors=(4, 4, 4), decoder_widths=(32, 16, 16, 8),
                   critic_widths=(16, 16), critic_level=1, num_identities=200, lr=1e-3, critic_lr=5e-4,
                   image_terms_subset=2)


def _datamodule(fraction: float, batches: int, batch_size: int):
    from benchmark3dface.data.semisup import SemiSupervisedDataModule

    return SemiSupervisedDataModule(
        mode="set", image_size=64, labelled_fraction=fraction, identities=100, train_size=batches * batch_size,
        val_size=0, batch_size=batch_size, num_workers=1,
        labelled={"synthetic": {"set_size": 2, "label_noise_std": 0.3}, "size": LABELLED_SETS},
        unlabelled={"synthetic": {"set_size": 2, "identity_seed": 1}})


def test_sets(n_sets: int = 30, set_size: int = 3):
    """Held-out people: ``n_sets`` synthetic test-split sets of ``set_size`` photos (64 px)."""
    from benchmark3dface.data.collate import collate_samples
    from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset

    ds = SyntheticFaceDataset({"mode": "set", "set_size": set_size, "image_size": 64}, "test", n_sets, seed=0)
    return collate_samples([ds[i] for i in range(n_sets)])


def verification_auc(codes: torch.Tensor, views: int) -> tuple[float, torch.Tensor]:
    """Identity verification from codes ``(B * views, D)`` ordered set by set (``views`` images
    per person): the ROC AUC (torchmetrics) of the cosine similarity of every image pair, same
    person = positive; and per set, the mean over its positive pairs of the fraction of all
    negative pairs they beat (for a paired test)."""
    from torchmetrics.functional.classification import binary_auroc

    z = torch.nn.functional.normalize(codes, dim=-1)
    person = torch.arange(codes.shape[0] // views).repeat_interleave(views)
    iu = torch.triu_indices(len(person), len(person), 1)
    s, same = (z @ z.T)[iu[0], iu[1]], person[iu[0]] == person[iu[1]]
    auc = float(binary_auroc(s, same.long()))
    pos, neg, pset = s[same], s[~same], person[iu[0]][same]
    per_set = torch.stack([(pos[pset == i][:, None] > neg[None, :]).float().mean()
                           for i in range(int(person.max()) + 1)])
    return auc, per_set


@torch.no_grad()
def evaluate(model, batch) -> dict:
    from benchmark3dface.metrics.true_error import aligned_vertex_errors

    model.eval()
    b, v = batch.image.shape[:2]
    imgs = batch.image.flatten(0, 1).float()
    codes = {k: [] for k in ("id", "exp")}
    for chunk in imgs.split(15):
        c = model.encode(model.network_input(chunk))
        for k in codes:
            codes[k].append(c[k])
    cid, cexp = torch.cat(codes["id"]), torch.cat(codes["exp"])
    verts = torch.cat([model.decode_shape(a, e) for a, e in zip(cid.split(15), cexp.split(15))])
    gt = batch.vertices.flatten(0, 1).float()
    single = aligned_vertex_errors(verts, gt).mean(-1).view(b, v)
    # set identity: mean identity code, neutral expression vs the neutral GT identity shape
    lay = model.facemodel.layout
    gid = batch.coeffs[:, 0, lay.slice("id")].float()
    gt_neutral = model.facemodel.shape(gid, torch.zeros(b, lay.exp))
    agg = model.decode_shape(cid.view(b, v, -1).mean(1), torch.zeros(b, cexp.shape[1]))
    set_err = aligned_vertex_errors(agg, gt_neutral).mean(-1)
    # within-set spread of the decoded identity shapes (each view's id code, neutral expression)
    ident = model.decode_shape(cid, torch.zeros_like(cexp)).view(b, v, -1, 3)
    spread = (ident - ident.mean(1, keepdim=True)).norm(dim=-1).mean((1, 2))
    auc, per_set_auc = verification_auc(cid, v)
    return {"single_err": single.flatten().tolist(), "set_err": set_err.tolist(), "spread": spread.tolist(),
            "auc": auc, "per_set_auc": per_set_auc.tolist()}


def train_variant(name: str, out: Path, batches: int, batch_size: int) -> dict:
    import lightning as L

    from b3f_methods.gcnsemi import GCNSemi

    cfg = VARIANTS[name]
    L.seed_everything(0, workers=True, verbose=False)
    model = GCNSemi(**QUICK_MODEL, loss_weights=cfg["loss_weights"])
    dm = _datamodule(cfg["labelled_fraction"], batches, batch_size)
    tr = L.Trainer(max_steps=2 * batches, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    t0 = time.perf_counter()
    tr.fit(model, datamodule=dm)
    minutes = (time.perf_counter() - t0) / 60
    res = evaluate(model, test_sets())
    res.update({"variant": name, "batches": batches, "batch_size": batch_size, "train_minutes": round(minutes, 2),
                "threads": torch.get_num_threads()})
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res))
    print(f"{name}: single {np.mean(res['single_err']):.3f} mm, set {np.mean(res['set_err']):.3f} mm, "
          f"spread {np.mean(res['spread']):.3f} mm, AUC {res['auc']:.3f} ({minutes:.1f} min)")
    return res


def capacity(out: Path, steps: int, batch_size: int = 8) -> dict:
    """GCN decoder capacity: fit the quick decoder from the GT (identity, expression)
    coefficients to the model's shapes; error on held-out prior samples."""
    from benchmark3dface.facemodel import load_facemodel
    from b3f_methods.gcnsemi.graph import GCNDecoder, GraphStack, mesh_hierarchy

    torch.manual_seed(0)
    fm = load_facemodel("procedural")
    lay = fm.layout
    hier = mesh_hierarchy(fm.mean_shape.numpy(), fm.triangles.numpy(), QUICK_MODEL["factors"])
    dec = GCNDecoder(GraphStack(hier), lay.id + lay.exp, QUICK_MODEL["decoder_widths"], 3, 6, 10.0)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)

    def draw(n):
        c = fm.sample_coeffs(n, generator=g)
        return torch.cat([c["id"], c["exp"]], 1), fm.shape(c["id"], c["exp"])

    test_c, test_s = draw(32)
    base = (fm.mean_shape[None] - test_s).norm(dim=-1).mean().item()
    t0 = time.perf_counter()
    for _ in range(steps):
        c, s = draw(batch_size)
        loss = (fm.mean_shape + dec(c) - s).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = (fm.mean_shape + dec(test_c) - test_s).norm(dim=-1).mean(-1)
    res = {"steps": steps, "batch_size": batch_size, "test_error_mm": err.mean().item(),
           "mean_shape_error_mm": base, "minutes": round((time.perf_counter() - t0) / 60, 2)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(res))
    print(f"capacity: {res}")
    return res


def compare(out: Path) -> None:
    from scipy.stats import wilcoxon

    got = {n: json.loads((out / f"{n}.json").read_text()) for n in VARIANTS if (out / f"{n}.json").is_file()}
    if "full" not in got:
        raise SystemExit(f"{out}: no full.json yet (run `train full` first)")
    f = got["full"]
    print(f"{'variant':16s} {'single mm':>10s} {'set mm':>8s} {'spread mm':>10s} {'AUC':>6s} {'min':>5s}")
    for n, r in got.items():
        print(f"{n:16s} {np.mean(r['single_err']):10.3f} {np.mean(r['set_err']):8.3f} {np.mean(r['spread']):10.3f} "
              f"{r['auc']:6.3f} {r['train_minutes']:5.1f}")
    for n, r in got.items():
        if n == "full":
            continue
        for key in ("single_err", "set_err", "spread", "per_set_auc"):
            a, b = np.asarray(f[key]), np.asarray(r[key])
            p = wilcoxon(a, b).pvalue if np.any(a != b) else 1.0
            print(f"full vs {n:15s} {key:12s} median diff (full - other) {np.median(a - b):+.4f}  "
                  f"n={len(a)}  Wilcoxon p={p:.3g}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m b3f_methods.gcnsemi.claims")
    ap.add_argument("what", choices=["train", "capacity", "compare"])
    ap.add_argument("variant", nargs="?", choices=sorted(VARIANTS))
    ap.add_argument("--out", default="runs/gcnsemi_claims")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=3)
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.what == "train":
        if a.variant is None:
            ap.error("train needs a variant")
        train_variant(a.variant, out, a.batches, a.batch_size)
    elif a.what == "capacity":
        capacity(out, a.steps)
    else:
        compare(out)


if __name__ == "__main__":
    main()
