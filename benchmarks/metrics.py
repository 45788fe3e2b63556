"""Time the scan protocols (MICC, NoW): batched torch path vs the open3d/scipy reference.

Pairs: a synthetic 35,721-vertex face-like prediction (smooth displaced ellipsoid patch, mm)
vs a 100K-point scan of the GT surface (dense resample + 0.2 mm noise + random rigid
transform); the prediction carries a smooth ~1.5 mm error and a random similarity. See
``benchmark3dface.metrics.synthetic.make_pair``.

The reference runs pair by pair, so its per-pair time is measured on ``--ref-pairs`` pairs
(default: all of ``--pairs`` up to 10) and the torch path on all ``--pairs`` pairs at once.
Both run the same protocol (100 ICP iterations max, tol 1e-6 mm, from ``--n-starts`` starts;
MICC refined on its point-to-plane residual for at most ``--refine-iter`` updates) and the
script checks that their per-pair numbers agree. Wall and process-CPU seconds are reported; on a shared machine
CPU time is the fairer comparison.

    python benchmarks/metrics.py                 # 100 pairs, 2 threads
    python benchmarks/metrics.py --pairs 4       # a quick look
    python benchmarks/metrics.py --protocols micc --search grid   # MICC with the plain-torch grid search
    python benchmarks/metrics.py --protocols now --now-search grid   # NoW with the plain-torch grid search
"""

from __future__ import annotations

import argparse
import os

# torch's OpenMP threads spin while waiting; on a loaded machine that costs more than the work
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time

import torch

from benchmark3dface.data.sample import Sample
from benchmark3dface.methods.reconstruction import FaceReconstruction, Reconstruction
from benchmark3dface.metrics import MICCRMSE, NoWScanToMesh
from benchmark3dface.metrics.coherent_tri import warm_up
from benchmark3dface.metrics.scanfit import NOW_SEARCHES, SEARCHES
from benchmark3dface.metrics.synthetic import make_pair


def build(n: int, n_grid: int, scan_points: int) -> tuple[list[Reconstruction], list[Sample]]:
    recs, samples = [], []
    for seed in range(n):
        p = make_pair(seed, n_grid=n_grid, scan_points=scan_points)
        sid = f"pair{seed:03d}"
        recs.append(Reconstruction(sid, [FaceReconstruction(p.pred_vertices, p.pred_triangles,
                                                            landmark_indices=p.pred_landmark_indices)]))
        samples.append(Sample(sample_id=sid, scan_vertices=p.scan, scan_landmarks7=p.scan_landmarks7,
                              meta={"scan_nose_tip": p.scan_nose_tip}))
    return recs, samples


def timed(metric, recs, samples) -> tuple[float, float, dict]:
    w, c = time.perf_counter(), time.process_time()
    metric.update(recs, samples)
    res = metric.compute()
    return time.perf_counter() - w, time.process_time() - c, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--ref-pairs", type=int, default=None, help="pairs timed on the reference (default min(pairs, 10))")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--protocols", default="micc,now")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grid", type=int, default=189, help="prediction grid side (189 -> 35,721 vertices)")
    ap.add_argument("--scan-points", type=int, default=100_000)
    ap.add_argument("--search", default="auto", choices=SEARCHES,
                    help="MICC torch path's closest-vertex search (auto: kdtree on the CPU)")
    ap.add_argument("--now-search", default="auto", choices=NOW_SEARCHES,
                    help="NoW torch path's closest-point-on-triangle search (auto: numba on the CPU)")
    ap.add_argument("--n-starts", type=int, default=3, help="ICP starts per pair (protocol default 3)")
    ap.add_argument("--refine-iter", type=int, default=30,
                    help="MICC point-to-plane refinement updates at most (protocol default 30; 0: off)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_ref = min(args.pairs, 10) if args.ref_pairs is None else min(args.ref_pairs, args.pairs)
    t0 = time.perf_counter()
    recs, samples = build(args.pairs, args.grid, args.scan_points)
    print(f"{args.pairs} pairs: prediction {args.grid ** 2} vertices, scan {args.scan_points} points "
          f"(generated in {time.perf_counter() - t0:.1f} s); threads={args.threads}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, device={args.device}, "
          f"n_starts={args.n_starts}, refine_iter={args.refine_iter}")
    classes = {"micc": (MICCRMSE, "rmse"), "now": (NoWScanToMesh, "mean")}
    if "now" in args.protocols.split(",") and args.device == "cpu" and args.now_search in ("auto", "numba"):
        # numba compiles its kernels on first use and caches them; report that apart
        print(f"numba kernels of the NoW search loaded in {warm_up():.1f} s (not in the timings below)")
    for name in args.protocols.split(","):
        cls, key = classes[name]
        kw = {"search": args.search if name == "micc" else args.now_search, "n_starts": args.n_starts,
              "refine_iter": args.refine_iter}
        tw, tc, res_t = timed(cls(backend="torch", **kw).to(args.device), recs, samples)
        rw, rc, res_r = timed(cls(backend="reference", n_starts=args.n_starts, refine_iter=args.refine_iter),
                              recs[:n_ref], samples[:n_ref])
        diffs = [abs(res_t.per_sample[key][k] - v) for k, v in res_r.per_sample[key].items()]
        per_t_w, per_t_c = tw / args.pairs, tc / args.pairs
        per_r_w, per_r_c = rw / n_ref, rc / n_ref
        print(f"[{name}] torch: {args.pairs} pairs in {tw:.1f} s wall / {tc:.1f} s CPU -> "
              f"{per_t_w:.3f} s wall, {per_t_c:.3f} s CPU per pair")
        print(f"[{name}] reference: {n_ref} pairs in {rw:.1f} s wall / {rc:.1f} s CPU -> "
              f"{per_r_w:.3f} s wall, {per_r_c:.3f} s CPU per pair")
        print(f"[{name}] speed-up torch vs reference per pair: {per_r_w / per_t_w:.2f}x wall, "
              f"{per_r_c / per_t_c:.2f}x CPU (target >= 5x); max |per-sample {key} difference| = "
              f"{max(diffs) if diffs else float('nan'):.2e} mm; {key} = {res_t.metrics[key].value:.4f} mm")


if __name__ == "__main__":
    main()
