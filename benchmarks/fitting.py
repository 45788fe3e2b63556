"""Fitting baseline vs. mean face on real photos: 5-point reprojection error and time per image.

Data: ``../shared/data/photos_5pt`` (10 photos with reference 5 points in ``NAME.txt``;
``--photos`` or ``B3F_SHARED_DATA`` to point elsewhere). Protocols (b3f_methods.fitting.evaluate):

- detected-input (default): both methods get the photo aligned and cropped with MTCNN's 5
  points (and those points as input landmarks); their 68 predicted landmarks, reduced to 5 and
  mapped back to the photo, are compared with the reference points;
- ``--leave-one-out``: each point in turn is held out of the alignment and of the fit; the
  held-out point's error is measured (5 fits per photo).

Prints per-photo errors (photo pixels) of both methods, the means, the ratio fitting / mean
face, and fitting's seconds per image (CPU, ``--threads`` threads, default settings unless
overridden with ``-m key=value``).

Usage: ``python benchmarks/fitting.py [--size 224] [--threads 2] [--leave-one-out] [-m photo_iters=20]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("B3F_SHARED_DATA", ROOT.parent / "shared" / "data")) / "photos_5pt"
    ap.add_argument("--photos", type=Path, default=default, help="folder of photos with NAME.txt 5-point files")
    ap.add_argument("--size", type=int, default=224, help="crop size (px)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--leave-one-out", action="store_true", help="also run the leave-one-out protocol")
    ap.add_argument("-m", "--method-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="Fitting constructor argument (JSON value), repeatable")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.photos.is_dir():
        print(f"photo folder {args.photos} is absent (the read-only ../shared/data/photos_5pt beside the project)")
        return 1

    from b3f_methods.baselines import MeanFace
    from b3f_methods.fitting import Fitting
    from b3f_methods.fitting.evaluate import (
        detected_input_errors,
        leave_one_out_errors,
        load_cases,
    )

    from benchmark3dface.cli.reconstruct import parse_method_args

    kwargs = parse_method_args(args.method_arg)
    t0 = time.perf_counter()
    cases = load_cases(args.photos)
    print(f"{len(cases)} photos, MTCNN detection {time.perf_counter() - t0:.1f} s; crop {args.size} px; "
          f"torch threads {torch.get_num_threads()}; fitting settings {kwargs or 'default'}")
    fitting, meanface = Fitting(**kwargs), MeanFace()
    mf = detected_input_errors(meanface, cases, args.size, args.batch_size)
    fit = detected_input_errors(fitting, cases, args.size, args.batch_size)
    print("\ndetected-input protocol: mean 5-point error vs the reference points (photo px)")
    print(f"{'photo':10s} {'meanface':>9s} {'fitting':>9s} {'fit s':>7s}")
    for i, c in enumerate(cases):
        print(f"{c.name:10s} {float(mf['errors'][i]):9.2f} {float(fit['errors'][i]):9.2f} "
              f"{float(fit['seconds'][i]):7.2f}")
    m_mf, m_fit = float(mf["errors"].mean()), float(fit["errors"].mean())
    det_gap = float((torch.stack([c.detected5 for c in cases]) - torch.stack([c.reference5 for c in cases]))
                    .double().norm(dim=-1).mean())
    summary = {"meanface_px": m_mf, "fitting_px": m_fit, "ratio_fitting_over_meanface": m_fit / m_mf,
               "mtcnn_vs_reference_px": det_gap, "fitting_seconds_per_image": float(fit["seconds"].mean()),
               "fitting_cpu_seconds_per_image": float(fit["cpu_seconds"].mean()),
               "fitting_wins": int((fit["errors"] < mf["errors"]).sum()), "photos": len(cases)}
    print(f"{'mean':10s} {m_mf:9.2f} {m_fit:9.2f} {summary['fitting_seconds_per_image']:7.2f}")
    print(f"ratio fitting / meanface = {m_fit / m_mf:.3f}; fitting better on {summary['fitting_wins']}/{len(cases)} "
          f"photos; MTCNN input vs reference points: {det_gap:.2f} px (floor of this protocol)")
    print(f"fitting: {summary['fitting_seconds_per_image']:.2f} s/image wall, "
          f"{summary['fitting_cpu_seconds_per_image']:.2f} s/image process CPU time (CPU, {torch.get_num_threads()} "
          f"threads, batch {args.batch_size}; wall time inflates on a loaded machine)")
    if args.leave_one_out:
        loo = leave_one_out_errors(fitting, cases, args.size)
        names = ("l-eye", "r-eye", "nose", "l-mouth", "r-mouth")
        print("\nleave-one-out protocol: error of the held-out point (photo px), meanface / fitting")
        print(f"{'photo':10s} " + " ".join(f"{n:>13s}" for n in names))
        for i, c in enumerate(cases):
            print(f"{c.name:10s} " + " ".join(f"{float(loo['meanface'][i, k]):6.2f}/{float(loo['fitting'][i, k]):6.2f}"
                                              for k in range(5)))
        per_point = [(float(loo["meanface"][:, k].mean()), float(loo["fitting"][:, k].mean())) for k in range(5)]
        print(f"{'mean':10s} " + " ".join(f"{a:6.2f}/{b:6.2f}" for a, b in per_point))
        lm, lf = float(loo["meanface"].mean()), float(loo["fitting"].mean())
        print(f"all held-out points: meanface {lm:.2f} px, fitting {lf:.2f} px, ratio {lf / lm:.3f}; "
              f"fitting {float(loo['seconds'].mean()):.2f} s/image")
        summary.update(loo_meanface_px=lm, loo_fitting_px=lf, loo_ratio=lf / lm)
    print("\n" + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
