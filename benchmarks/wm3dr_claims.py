"""WM3DR's detection and relative-depth claims on synthetic multi-face images.

For a trained ``wm3dr`` checkpoint (and, with ``--detect-regress``, the detect-then-regress
baseline on the same images) the script reconstructs ``--images`` synthetic multi-face test
images (``--image-size`` px, 1-10 faces, the engine's global camera), matches predicted to GT
faces with the project's rule (``metrics.matching.MatchRule``: centre within 0.5 x the GT face
size) and prints:

- recall of the GT faces of at least ``--min-face`` px (``sqrt(w h)`` of the GT 68-landmark box)
  and of all faces, the false positives (detections matched to no GT face) and the images with no
  detection;
- relative depth (WM3DR): Spearman correlation between the predicted and GT camera depths of
  the origins of the matched faces, pooled over all matched faces and per image (mean over
  images with >= 3 matched faces); the GT depth is ``D - t_z`` of the engine's coefficients, the
  predicted one ``D - t_z`` of the face's translation under the same global camera.

Usage: ``python benchmarks/wm3dr_claims.py --ckpt runs/wm3dr_quick/checkpoints/last.ckpt
[--images 32] [--image-size 256] [--min-face 40] [--detect-regress] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402


def test_images(n: int, image_size: int, seed: int = 0) -> list:
    from benchmark3dface.data.datamodules import SyntheticDataModule

    dm = SyntheticDataModule(mode="multiface", image_size=image_size, train_size=0, val_size=0, test_size=n,
                             seed=seed, batch_size=1, num_workers=0, drop_last=False)
    dm.setup("test")
    return [dm.datasets["test"][i] for i in range(n)]


def face_sizes(lm68: torch.Tensor) -> torch.Tensor:
    """(G, 68, 2) -> (G,) sqrt(w h) of each GT landmark box (px)."""
    wh = lm68.amax(1) - lm68.amin(1)
    return (wh[:, 0] * wh[:, 1]).clamp_min(0).sqrt()


def score_image(faces: list, gt_lm68: torch.Tensor, gt_centers: torch.Tensor | None) -> list[int | None]:
    from benchmark3dface.metrics.matching import MatchRule

    scores = torch.tensor([1.0 if f.score is None else float(f.score) for f in faces])
    return MatchRule().match(faces, gt_lm68, gt_centers, scores=scores)


def detection_summary(matches: list[list[int | None]], n_faces: list[int], sizes: list[torch.Tensor],
                      min_face: float) -> dict:
    """Recall over all GT faces and over those of at least ``min_face`` px, false positives
    (detections matched to no GT face), images without a detection."""
    tp = gt = tp_big = gt_big = fp = empty = 0
    for m, n, s in zip(matches, n_faces, sizes):
        hit = torch.tensor([j is not None for j in m], dtype=torch.bool)
        big = s >= min_face
        tp += int(hit.sum())
        gt += len(m)
        tp_big += int((hit & big).sum())
        gt_big += int(big.sum())
        fp += n - int(hit.sum())
        empty += int(n == 0)
    return {"recall": tp / gt if gt else float("nan"), "gt_faces": gt,
            "recall_min_face": tp_big / gt_big if gt_big else float("nan"), "gt_faces_min_face": gt_big,
            "false_positives": fp, "images_without_detection": empty}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, required=True, help="a trained wm3dr checkpoint")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--min-face", type=float, default=40.0)
    ap.add_argument("--threshold", type=float, default=None, help="override the checkpoint's peak threshold")
    ap.add_argument("--detect-regress", action="store_true", help="also detect_regress (meanface on the crops)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from b3f_methods.wm3dr import WM3DR

    from benchmark3dface.data.datamodules import SampleCollate

    model = WM3DR.load_from_checkpoint(str(args.ckpt), map_location="cpu", weights_only=True).eval()
    if args.threshold is not None:
        model.hparams.threshold = float(args.threshold)
    methods = {"wm3dr": model}
    if args.detect_regress:
        from b3f_methods.baselines.detect_regress import DetectRegress

        methods["detect_regress"] = DetectRegress(inner="meanface")
    samples = test_images(args.images, args.image_size, args.seed)
    collate = SampleCollate(fill_missing=True)
    lay = model.facemodel.layout
    out = {}
    for name, method in methods.items():
        matches, n_faces, sizes = [], [], []
        pred_d, gt_d, per_image = [], [], []
        for s in samples:
            rec = method.reconstruct(collate([s]))[0]
            lm = s.lm68.reshape(-1, 68, 2)
            m = score_image(rec.faces, lm, s.centers)
            matches.append(m)
            n_faces.append(len(rec.faces))
            sizes.append(face_sizes(lm))
            gt_t = s.coeffs.reshape(lm.shape[0], -1)[:, lay.slice("trans")]
            pi_p, pi_g = [], []
            for g, j in enumerate(m):
                if j is None or rec.faces[j].translation is None:
                    continue
                dist = float(s.camera["distance"])
                pi_p.append(dist - float(rec.faces[j].translation[2]))
                pi_g.append(dist - float(gt_t[g, 2]))
            pred_d += pi_p
            gt_d += pi_g
            if len(pi_p) >= 3:
                per_image.append(spearman(pi_p, pi_g))
        row = detection_summary(matches, n_faces, sizes, args.min_face)
        if name == "wm3dr":
            row |= {"depth_spearman_pooled": spearman(pred_d, gt_d), "matched_faces": len(pred_d),
                    "depth_spearman_per_image_mean": statistics.fmean(per_image) if per_image else float("nan"),
                    "images_with_3_matched": len(per_image)}
        out[name] = row
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              flush=True)
    print(f"({args.images} synthetic multi-face test images at {args.image_size}px, seed {args.seed}; "
          f"recall_min_face: GT faces >= {args.min_face:g} px)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
