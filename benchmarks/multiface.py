"""Detect-then-regress time per image as a function of the face count (the multi-face curve).

The ``detect_regress`` baseline (methods/baselines/detect_regress.py: detector -> square crops
-> a single-image method -> faces placed back) runs once per face, so its time per image grows
with the number of faces; a single-shot multi-face network (WM3DR) is compared against this
curve. For k = 1..10 faces the script renders ``--images`` synthetic multi-face images with
exactly k faces (the engine's ``min_faces = max_faces = k``; the GT face count of every image
is checked and printed), times ``reconstruct`` on each image alone (wall clock, after one
warm-up image), and prints per k: the GT faces per image, the faces found, seconds per image
(mean and median), seconds per found face, and the ratio T(k) / T(1).

Usage: ``python benchmarks/multiface.py [--faces 1-10] [--images 3] [--image-size 512]
[--inner fitting|meanface] [--threads 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402


def parse_counts(text: str) -> list[int]:
    """``"1-10"`` / ``"1,2,5"`` / ``"1-3,8"`` -> sorted distinct face counts (each >= 1)."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a < 1 or b < a:
            raise ValueError(f"face counts must be ranges of integers >= 1, got {part!r}")
        out.update(range(a, b + 1))
    if not out:
        raise ValueError(f"no face count in {text!r}")
    return sorted(out)


def multiface_images(k: int, n: int, image_size: int, seed: int = 0) -> list:
    """``n`` synthetic multi-face samples with exactly ``k`` faces each (engine option
    ``min_faces = max_faces = k``)."""
    from benchmark3dface.data.datamodules import SyntheticDataModule

    dm = SyntheticDataModule(mode="multiface", image_size=image_size, train_size=0, val_size=0, test_size=n,
                             seed=seed + 1000 * k, batch_size=1, num_workers=0,
                             options={"min_faces": k, "max_faces": k}, drop_last=False)
    dm.setup("test")
    return [dm.datasets["test"][i] for i in range(n)]


def face_count(sample) -> int:
    """GT faces of a multi-face sample (its 68-landmark sets)."""
    return int(sample.lm68.reshape(-1, 68, 2).shape[0])


def summarise(times: dict[int, list[float]], found: dict[int, list[int]],
              gt: dict[int, list[int]] | None = None) -> list[dict]:
    """Per face count: mean / median seconds per image, GT and found faces per image, seconds
    per found face, T(k) / T(1) (mean times; the smallest k stands for T(1) when 1 is not
    measured)."""
    ks = sorted(times)
    base = statistics.fmean(times[ks[0]]) if ks else float("nan")
    rows = []
    for k in ks:
        mean = statistics.fmean(times[k])
        faces = sum(found[k])
        rows.append({"k": k, "seconds_mean": mean, "seconds_median": statistics.median(times[k]),
                     "gt_per_image": statistics.fmean(gt[k]) if gt else float(k),
                     "found_per_image": faces / len(found[k]),
                     "seconds_per_found_face": sum(times[k]) / faces if faces else float("nan"),
                     "ratio": mean / base})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default="1-10", help="face counts, e.g. 1-10 or 1,2,5")
    ap.add_argument("--images", type=int, default=3, help="images per face count")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--inner", default="fitting", help="the single-image method run on the crops")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = parse_counts(args.faces)

    from b3f_methods.baselines.detect_regress import DetectRegress

    from benchmark3dface.data.datamodules import SampleCollate

    method = DetectRegress(inner=args.inner)
    collate = SampleCollate(fill_missing=True)
    times: dict[int, list[float]] = {}
    found: dict[int, list[int]] = {}
    gts: dict[int, list[int]] = {}
    warm = False
    for k in counts:
        samples = multiface_images(k, args.images, args.image_size, args.seed)
        got = [face_count(s) for s in samples]
        gts[k] = got
        if any(g != k for g in got):
            print(f"k={k}: the engine placed {got} faces, not {k} each (overlap limit); rows use the real counts",
                  file=sys.stderr)
        if not warm:  # first call loads the detector networks
            method.reconstruct(collate([samples[0]]))
            warm = True
        times[k], found[k] = [], []
        for s in samples:
            batch = collate([s])
            t0 = time.perf_counter()
            rec = method.reconstruct(batch)[0]
            times[k].append(time.perf_counter() - t0)
            found[k].append(len(rec.faces))
        print(f"k={k:2d}: {statistics.fmean(times[k]):6.2f} s/image, faces found {found[k]} (GT {got})", flush=True)
    rows = summarise(times, found, gts)
    print(f"\ndetect_regress ({args.inner} on {method.crop_size}px crops), {args.image_size}px images, "
          f"{args.images} per k, {args.threads} threads")
    print(f"{'k':>3} {'s/image':>9} {'median':>8} {'GT':>5} {'found':>6} {'s/face':>8} {'T(k)/T(1)':>10}")
    for r in rows:
        print(f"{r['k']:>3} {r['seconds_mean']:>9.2f} {r['seconds_median']:>8.2f} {r['gt_per_image']:>5.1f} "
              f"{r['found_per_image']:>6.1f} "
              f"{r['seconds_per_found_face']:>8.2f} {r['ratio']:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
