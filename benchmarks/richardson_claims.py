"""Richardson'17 claims, paired on the same synthetic test samples (scipy.stats.wilcoxon).

    python benchmarks/richardson_claims.py iterations --ckpt C.ckpt [-n 50]
        iterate 3 / 4 vs iterate 1 of one CoarseNet checkpoint: NME (landmark error / face
        size, %), pose error (rotation angle, degrees), true error (mm)
    python benchmarks/richardson_claims.py feedback --ckpt A.ckpt --ckpt-b B.ckpt
        two CoarseNet checkpoints (PNCC+normal vs PNCC-only feedback) at iterate 1 and their last
    python benchmarks/richardson_claims.py refine [--fine F.ckpt] [--detail 0 2] [--coarse net|gt]
            [--albedo-components K] [--sfs-weights SH F SM] [--gt-albedo]
        depth error (median-aligned, mean and p90 on the common mask: coarse, FineNet, Eq. 14
        optimisation all valid) of CoarseNet, FineNet and the per-image optimisation; without
        --fine only the optimisation (use --coarse gt); --gt-albedo adds the optimisation with
        the true albedo (measurement aid)
    python benchmarks/richardson_claims.py e2e --fine A.ckpt --ckpt-b B.ckpt [--detail 2]
        two coarsefine checkpoints (e.g. frozen vs end-to-end stage, Sec. 4.4): coarse and
        FineNet depth errors, true error of the coarse and of the refined mesh, coarse drift
    python benchmarks/richardson_claims.py shading [--detail 0 2]
        how well Eq. 8's image model (GT albedo x first-order SH) fits the engine's images on
        the GT geometry: RMS residual over the face and over the SfS (skin + nose) mask

Test samples: the synthetic engine's weak-perspective grayscale `test` split at --size px,
seed 0 (the quick benchmark's `single_weak` setting, sizes as given), plus the engine options of
--options (JSON), e.g. the Lambertian image model of Eq. 8 on clean images:
--options '{"shading": "lambertian_sh1", "occlusion_prob": 0, "noise_max": 0, "blur_prob": 0, "jpeg_prob": 0}'. Prints one line per
comparison: means, the Wilcoxon p-value, how many samples improved.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from scipy.stats import wilcoxon  # noqa: E402

from benchmark3dface.data.datamodules import SyntheticDataModule  # noqa: E402
from benchmark3dface.geometry.rotation import euler_to_matrix  # noqa: E402
from benchmark3dface.metrics.depth import depth_errors, depth_stats  # noqa: E402
from benchmark3dface.metrics.true_error import aligned_vertex_errors  # noqa: E402


def test_batches(n: int, size: int, detail: float = 0.0, batch: int = 25, options: dict | None = None):
    opts = {"projection": "weak_perspective", "grayscale": True, **(options or {})}
    if detail > 0:
        opts["detail_amplitude"] = float(detail)
    dm = SyntheticDataModule(mode="single", image_size=size, train_size=0, val_size=0, test_size=n,
                             batch_size=min(batch, n), options=opts, drop_last=False)
    dm.setup("test")
    return list(dm.test_dataloader())


def iterate_errors(model, b, its: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per-sample errors of every iterate (``its``: ``model.iterate(b.image)``, computed when not
    given): (n_iter+1, B) each."""
    size = int(b.image.shape[-1])
    its = model.iterate(b.image) if its is None else its
    gt_rot = euler_to_matrix(b.pose[:, :3].float())
    lm = b.lm68.float()
    face_size = (lm.amax(1) - lm.amin(1)).prod(-1).sqrt()
    out = {"nme": [], "pose": [], "true": []}
    for r in its:
        geo = model.decoder.decode(r, size)
        out["nme"].append(100 * (geo["landmarks2d"] - lm).norm(dim=-1).mean(-1) / face_size)
        rel = geo["rotation"] @ gt_rot.transpose(1, 2)
        cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
        out["pose"].append(torch.rad2deg(torch.arccos(cos)))
        out["true"].append(aligned_vertex_errors(geo["vertices"], b.vertices.float()).mean(-1).float())
    return {k: torch.stack(v) for k, v in out.items()}


def paired(name: str, a: torch.Tensor, b: torch.Tensor, label_a: str, label_b: str) -> None:
    a, b = a.double().numpy(), b.double().numpy()
    p = wilcoxon(a, b).pvalue if (a != b).any() else math.nan
    print(f"{name:14s} {label_a} {a.mean():8.3f}  {label_b} {b.mean():8.3f}  "
          f"(n={len(a)}, {label_b} lower on {(b < a).sum()}, Wilcoxon p={p:.2g})")


def load(cls, ckpt: str, **kw):
    m = cls.load_from_checkpoint(ckpt, map_location="cpu", **kw)
    return m.eval()


def update_similarity(iterates: list[torch.Tensor], part: slice) -> list[tuple[float, float]]:
    """How much the k-th update repeats the first: for k = 1.., the mean over samples of
    ``|u_k| / |u_0|`` and of ``cos(u_k, u_0)`` on the ``part`` entries of ``u_k = r_{k+1} - r_k``.
    A network whose update ignores the feedback gives ratio 1 and cosine 1; one that converges,
    a ratio going to 0."""
    u = [(b - a)[:, part].double() for a, b in zip(iterates[:-1], iterates[1:])]
    n0 = u[0].norm(dim=-1).clamp_min(1e-12)
    out = []
    for uk in u[1:]:
        ratio = (uk.norm(dim=-1) / n0).mean()
        cos = torch.nn.functional.cosine_similarity(uk, u[0], dim=-1, eps=1e-12).mean()
        out.append((float(ratio), float(cos)))
    return out


def cmd_iterations(args) -> None:
    from b3f_methods.richardson import CoarseNet

    m = load(CoarseNet, args.ckpt)
    batches = test_batches(args.n, args.size, options=args.options)
    per_batch = [m.iterate(b.image) for b in batches]
    errs = [iterate_errors(m, b, its) for b, its in zip(batches, per_batch)]
    e = {k: torch.cat([x[k] for x in errs], 1) for k in errs[0]}
    for k, unit in (("nme", "%"), ("pose", "deg"), ("true", "mm")):
        paired(f"{k} [{unit}]", e[k][0], e[k][1], "it0", "it1")  # the mean-face start vs one step
        for it in (3, 4):
            if it < e[k].shape[0]:
                paired(f"{k} [{unit}]", e[k][1], e[k][it], "it1", f"it{it}")
    its = [torch.cat(x) for x in zip(*per_batch)]
    lay = m.decoder.layout
    for name, part in (("pose", lay.pose_slice), ("shape", lay.shape_slice)):
        sim = update_similarity(its, part)
        print(f"update k vs update 0 ({name}): " + ", ".join(
            f"k={k + 1}: |u_k|/|u_0| {r:.2f}, cos {c:.2f}" for k, (r, c) in enumerate(sim)))


def cmd_feedback(args) -> None:
    """Two CoarseNet checkpoints on the same images, at iterate 1 and at their last iterate."""
    from b3f_methods.richardson import CoarseNet

    a, b_ = load(CoarseNet, args.ckpt), load(CoarseNet, args.ckpt_b)
    ea, eb = {}, {}
    for b in test_batches(args.n, args.size, options=args.options):
        for store, m in ((ea, a), (eb, b_)):
            for k, v in iterate_errors(m, b).items():
                store.setdefault(k, []).append(v)
    la, lb = a.hparams.feedback, b_.hparams.feedback
    for k, unit in (("nme", "%"), ("pose", "deg"), ("true", "mm")):
        xa, xb = torch.cat(ea[k], 1), torch.cat(eb[k], 1)
        paired(f"{k} [{unit}] it1", xa[1], xb[1], la, lb)
        paired(f"{k} [{unit}] last", xa[-1], xb[-1], la, lb)


def gt_gray_albedo(fm, b, clamp: bool) -> torch.Tensor:
    """(B, N, 1) luminance of the samples' ground-truth vertex albedo (the engine's albedo
    coefficients; ``clamp``: clamped to [0, 1] first, as the engine draws it)."""
    alb = fm.albedo(b.coeffs[:, fm.layout.slice("tex")].float())
    return (alb.clamp(0, 1) if clamp else alb) @ torch.tensor([0.299, 0.587, 0.114])[:, None]


def gt_albedo_problem(fine, gray: torch.Tensor, r: torch.Tensor, b):
    """Eq. 14's set-up with the *ground-truth* albedo (luminance of the engine's clamped vertex
    albedo) instead of the Eq. 11-12 estimate: a measurement aid (--gt-albedo), never a row."""
    return fine.problem(gray, r, albedo=gt_gray_albedo(fine.facemodel, b, clamp=True))[0]


def cmd_refine(args) -> None:
    from b3f_methods.richardson import CoarseFine
    from b3f_methods.richardson.finenet import sfs_optimize
    from b3f_methods.richardson.geometry import grayscale

    kw = {}
    if args.albedo_components is not None:
        kw["albedo_components"] = args.albedo_components
    if args.sfs_weights is not None:
        kw["sfs_weights"] = dict(zip(("sh", "f", "sm"), args.sfs_weights))
    for detail in args.detail:
        # without --fine: an untrained CoarseFine (CoarseNet untrained, no FineNet row), for the
        # per-image optimisation from the GT coefficients (--coarse gt)
        fine = (load(CoarseFine, args.fine, coarse_checkpoint=None, **kw) if args.fine
                else CoarseFine(image_size=args.size, **kw).eval())
        rows = (["finenet"] if args.fine else []) + ["optimize"] + (["optimize, GT albedo"] if args.gt_albedo else [])
        res = {name: ([], []) for name in ["coarse"] + rows}
        for b in test_batches(args.n, args.size, detail, options=args.options):
            gray = grayscale(b.image.float())
            # the coarse estimate: CoarseNet's last iterate, or (--coarse gt, refinement in
            # isolation) the ground-truth coefficients and pose -- a measurement aid, never a row
            r = fine.target(b) if args.coarse == "gt" else fine.iterate(b.image)[-1]
            out = {}
            for name in rows:
                if name == "optimize, GT albedo":
                    z = sfs_optimize(gt_albedo_problem(fine, gray, r, b), fine.hparams.optimize_steps,
                                     fine.hparams.optimize_lr, fine.weights)
                    out[name] = torch.where(out["coarse"].isfinite(), z, torch.full_like(z, float("nan")))
                    continue
                fine.hparams.refine = "network" if name == "finenet" else "optimize"
                out[name], out["coarse"] = fine.refine_depth(gray, r)
            for i in range(len(r)):
                gt = b.depth[i]
                m = gt.isfinite()
                for z in out.values():
                    m = m & z[i].isfinite()
                for name, z in out.items():
                    mean, p90 = depth_stats(depth_errors(z[i], gt, m, "median"))
                    res[name][0].append(mean)
                    res[name][1].append(p90)
        print(f"-- detail_amplitude {detail} mm, {args.n} samples at {args.size} px, coarse = {args.coarse}, "
              f"albedo components {fine.k_albedo}, weights {fine.weights}, options {args.options}")
        for name in rows:
            for j, stat in enumerate(("mean", "p90")):
                paired(f"depth {stat}", torch.tensor(res["coarse"][j]), torch.tensor(res[name][j]), "coarse", name)


def cmd_e2e(args) -> None:
    """Two coarsefine checkpoints (A = --fine, e.g. the frozen stage; B = --ckpt-b, e.g. the
    end-to-end stage) on the same images: coarse and FineNet depth errors (common mask of both),
    the true error of the coarse mesh and of the refined mesh (``refined_vertices``), and how far
    B's coarse mesh moved from A's."""
    from b3f_methods.richardson import CoarseFine
    from b3f_methods.richardson.geometry import grayscale

    models = {"A": load(CoarseFine, args.fine, coarse_checkpoint=None),
              "B": load(CoarseFine, args.ckpt_b, coarse_checkpoint=None)}
    for detail in args.detail:
        res: dict[str, list[float]] = {}
        for b in test_batches(args.n, args.size, detail, options=args.options):
            gray = grayscale(b.image.float())
            out = {}
            for k, m in models.items():
                m.hparams.refine = "network"
                r = m.iterate(b.image)[-1]
                zf, zc = m.refine_depth(gray, r)
                out[k] = (zc, zf, m.decoder.decode(r, args.size)["vertices"], m.refined_vertices(r, zf, zc)[0])
            res.setdefault("drift", []).extend(((out["A"][2] - out["B"][2]) ** 2).sum(-1).mean(-1).tolist())
            gt_v = b.vertices.float()
            for k, (_, _, vc, vr) in out.items():  # one similarity alignment per sample, batched
                for name, v in (("coarse mesh", vc), ("refined mesh", vr)):
                    res.setdefault(f"{k} true error {name}", []).extend(
                        aligned_vertex_errors(v, gt_v).mean(-1).tolist())
            for i in range(len(gray)):
                gt = b.depth[i]
                m_ = gt.isfinite()
                for zc, zf, _, _ in out.values():
                    m_ = m_ & zc[i].isfinite() & zf[i].isfinite()
                for k, (zc, zf, _, _) in out.items():
                    for name, z in (("coarse depth", zc), ("FineNet depth", zf)):
                        mean, p90 = depth_stats(depth_errors(z[i], gt, m_, "median"))
                        res.setdefault(f"{k} {name} mean", []).append(mean)
                        res.setdefault(f"{k} {name} p90", []).append(p90)
        print(f"-- detail_amplitude {detail} mm, {args.n} samples at {args.size} px; A = {args.fine}; B = {args.ckpt_b}")
        for q in ("coarse depth mean", "coarse depth p90", "FineNet depth mean", "FineNet depth p90",
                  "true error coarse mesh", "true error refined mesh"):
            paired(q, torch.tensor(res[f"A {q}"]), torch.tensor(res[f"B {q}"]), "A", "B")
        for k in models:
            paired(f"{k}: mesh", torch.tensor(res[f"{k} true error coarse mesh"]),
                   torch.tensor(res[f"{k} true error refined mesh"]), "coarse", "refined")
        d = torch.tensor(res["drift"])
        print(f"B's coarse mesh vs A's: mean squared vertex distance {d.mean():.2f} mm^2 (RMS {d.mean().sqrt():.2f} mm)")


def cmd_shading(args) -> None:
    """How well Eq. 8's image model fits the engine's images on the GT geometry: RMS residual
    (grey levels, 0-255) of a per-image least-squares first-order SH light with the GT albedo
    (luminance of the engine's albedo coefficients) on the GT depth's normals, over the whole
    visible face and over the model's skin + nose regions (the SfS mask)."""
    from b3f_methods.richardson import CoarseFine
    from b3f_methods.richardson.finenet import fill_depth, normals
    from benchmark3dface.losses.depth import erode_mask4
    from benchmark3dface.losses.shading import sfs_loss, solve_sh_lighting

    m = CoarseFine(image_size=args.size)
    fm = m.facemodel
    k = m.k_albedo
    for detail in args.detail:
        res = {"face": [], "skin+nose": [], "skin+nose, coarse normals": []}
        for b in test_batches(args.n, args.size, detail, options=args.options):
            r = m.target(b)
            alb = gt_gray_albedo(fm, b, clamp=False)
            extra = torch.cat([m.vertex_extra.expand(len(r), -1, -1), alb], 2)
            rend = m.decoder.render(r, args.size, extra=extra)
            ex = rend["extra"]
            n = normals(fill_depth(b.depth), 1.0 / rend["geo"]["scale"])
            # the detail-free normals of the GT coefficients' mesh: how much of the image the
            # detail (beyond the model) explains
            n0 = normals(fill_depth(rend["depth"][:, 0]), 1.0 / rend["geo"]["scale"])
            img = b.image[:, :1].float() * 255
            full = erode_mask4(erode_mask4(rend["mask"][:, 0] > 0))
            skin = full & (ex[:, k + 1] > 0.999)
            cases = {"face": (full, n), "skin+nose": (skin, n), "skin+nose, coarse normals": (skin, n0)}
            for name, (mk, nn) in cases.items():
                for i in range(len(r)):
                    a, ni, ii, mi = ex[i:i + 1, k + 2:k + 3], nn[i:i + 1], img[i:i + 1], mk[i:i + 1]
                    light = solve_sh_lighting(ii, a, ni, mi, ridge=1e-4)
                    res[name].append(float(sfs_loss(ii, a, ni, light, mi).sqrt()))
        print(f"-- detail_amplitude {detail} mm, {args.n} samples at {args.size} px: RMS residual of "
              "GT albedo x first-order SH on GT normals (grey levels)")
        for name, v in res.items():
            t = torch.tensor(v)
            print(f"{name:26s} mean {t.mean():6.2f}  median {t.median():6.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("claim", choices=("iterations", "feedback", "refine", "shading", "e2e"))
    ap.add_argument("--ckpt", help="coarsenet checkpoint")
    ap.add_argument("--ckpt-b", help="second coarsenet checkpoint (feedback) / coarsefine checkpoint B (e2e)")
    ap.add_argument("--fine", help="coarsefine checkpoint (refine; none: an untrained one, FineNet = identity)")
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--detail", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--coarse", choices=("net", "gt"), default="net",
                    help="refine: start from CoarseNet (net) or from the GT coefficients and pose (gt)")
    ap.add_argument("--options", type=json.loads, default={},
                    help='extra synthetic-engine options of the test images (JSON), e.g. '
                         '\'{"shading": "lambertian_sh1", "noise_max": 0}\'')
    ap.add_argument("--albedo-components", type=int, help="refine: Eq. 12's albedo basis size (paper 10)")
    ap.add_argument("--sfs-weights", type=float, nargs=3, metavar=("SH", "F", "SM"),
                    help="refine: Eq. 14's lambda_sh, lambda_f, lambda_sm (paper 1, 5e-3, 1)")
    ap.add_argument("--gt-albedo", action="store_true",
                    help="refine: also the optimisation with the ground-truth albedo (a measurement aid)")
    args = ap.parse_args(argv)
    t = time.time()
    {"iterations": cmd_iterations, "feedback": cmd_feedback, "refine": cmd_refine,
     "shading": cmd_shading, "e2e": cmd_e2e}[args.claim](args)
    print(f"({time.time() - t:.0f} s, torch threads {torch.get_num_threads()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
