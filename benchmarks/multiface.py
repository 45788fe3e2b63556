"""Time per image as a function of the face count: detect-then-regress vs WM3DR, side by side.

The ``detect_regress`` baseline (methods/baselines/detect_regress.py: detector -> square crops
-> a single-image method -> faces placed back) runs once per face, so its time per image grows
with the number of faces; a single-shot multi-face network (WM3DR) is compared against this
curve. For k = 1..10 faces the script renders ``--images`` synthetic multi-face images with
exactly k faces (the engine's ``min_faces = max_faces = k``; the GT face count of every image
is checked and printed), times ``reconstruct`` on each image alone (wall clock, after one
warm-up image), and prints per k: the GT faces per image, the faces found, seconds per image
(mean and median), seconds per found face, and the ratio T(k) / T(1).

WM3DR (methods/wm3dr: one network pass per image, one face decoded per heatmap peak) is timed
on the same images in the same run (``--methods detect_regress,wm3dr``), from ``--wm3dr-ckpt``
(a trained ``wm3dr`` checkpoint) or, without one, an untrained network of ``--wm3dr-backbone``
whose parameter map is replaced by oracle maps with exactly the GT peaks (``--wm3dr-oracle``:
the per-face decoding cost is then paid for every GT face, as a trained network would; the
network pass itself is still run and timed). The last table gives T(k)/T(1) of both methods
and the ratio of their times.

Usage: ``python benchmarks/multiface.py [--faces 1-10] [--images 3] [--image-size 512]
[--inner fitting|meanface] [--methods detect_regress,wm3dr] [--wm3dr-ckpt PATH]
[--wm3dr-backbone resnet50] [--wm3dr-oracle] [--threads 2] [--json out.json]``
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


def time_images(method, samples: list, collate) -> tuple[list[float], list[int]]:
    """Wall-clock seconds of ``method.reconstruct`` on each sample alone, and the faces it
    returned per image."""
    times, found = [], []
    for s in samples:
        batch = collate([s])
        t0 = time.perf_counter()
        rec = method.reconstruct(batch)[0]
        times.append(time.perf_counter() - t0)
        found.append(len(rec.faces))
    return times, found


class OracleMaps:
    """Wraps a WM3DR network: runs (and so times) the real network pass, then returns heatmap
    logits with exactly the GT centre cells of the current image above the threshold and the
    raw parameters that decode to the GT faces there, so the decoding cost grows with the
    number of faces as it does for a trained network. Set ``sample`` before each call."""

    def __init__(self, model):
        self.model = model
        self.forward = model.net.forward
        self.sample = None
        model.net.forward = self

    def __call__(self, image):
        from b3f_methods.wm3dr import cell_of, coeffs_to_raw

        from benchmark3dface.geometry.camera import PerspectiveCamera

        heat, pmap = self.forward(image)
        s = self.sample
        h, w = heat.shape[-2:]
        heat = torch.full_like(heat, -9.0)
        cells = cell_of(s.centers.reshape(-1, 2), 8, h, w)
        cam = PerspectiveCamera.global_image(image.shape[-1], image.shape[-2], focal=float(self.model.hparams.focal))
        raw = coeffs_to_raw(s.coeffs.reshape(cells.shape[0], -1).double(), cells, cam, 8,
                            self.model.facemodel.layout).to(pmap)
        pmap = pmap.clone()
        heat[0, 0, cells[:, 0], cells[:, 1]] = 9.0
        pmap[0, :, cells[:, 0], cells[:, 1]] = raw.T
        return heat, pmap


def build_wm3dr(ckpt: Path | None, backbone: str):
    from b3f_methods.wm3dr import WM3DR

    if ckpt is not None:
        model = WM3DR.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=True)
    else:
        model = WM3DR(backbone=backbone)
    return model.eval()


def print_table(name: str, rows: list[dict]) -> None:
    print(f"\n{name}")
    print(f"{'k':>3} {'s/image':>9} {'median':>8} {'GT':>5} {'found':>6} {'s/face':>8} {'T(k)/T(1)':>10}")
    for r in rows:
        print(f"{r['k']:>3} {r['seconds_mean']:>9.3f} {r['seconds_median']:>8.3f} {r['gt_per_image']:>5.1f} "
              f"{r['found_per_image']:>6.1f} {r['seconds_per_found_face']:>8.3f} {r['ratio']:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default="1-10", help="face counts, e.g. 1-10 or 1,2,5")
    ap.add_argument("--images", type=int, default=3, help="images per face count")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--inner", default="fitting", help="the single-image method run on the crops")
    ap.add_argument("--methods", default="detect_regress,wm3dr", help="which of detect_regress, wm3dr to time")
    ap.add_argument("--wm3dr-ckpt", type=Path, default=None, help="a trained wm3dr Lightning checkpoint")
    ap.add_argument("--wm3dr-backbone", default="resnet50", help="backbone of the untrained WM3DR (no --wm3dr-ckpt)")
    ap.add_argument("--wm3dr-oracle", action="store_true",
                    help="decode exactly the GT faces (oracle maps after the real network pass)")
    ap.add_argument("--device", default="cpu", help="device of the WM3DR network (cpu, cuda)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = parse_counts(args.faces)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in names if m not in ("detect_regress", "wm3dr")]
    if bad or not names:
        raise SystemExit(f"--methods: choose among detect_regress, wm3dr, got {args.methods!r}")

    from benchmark3dface.data.datamodules import SampleCollate

    methods = {}
    if "detect_regress" in names:
        from b3f_methods.baselines.detect_regress import DetectRegress

        methods["detect_regress"] = DetectRegress(inner=args.inner)
    oracle = None
    if "wm3dr" in names:
        methods["wm3dr"] = build_wm3dr(args.wm3dr_ckpt, args.wm3dr_backbone).to(args.device)
        if args.wm3dr_oracle:
            oracle = OracleMaps(methods["wm3dr"])
    collate = SampleCollate(fill_missing=True)

    times = {n: {} for n in methods}
    found = {n: {} for n in methods}
    gts: dict[int, list[int]] = {}
    warm = False
    for k in counts:
        samples = multiface_images(k, args.images, args.image_size, args.seed)
        got = [face_count(s) for s in samples]
        gts[k] = got
        if any(g != k for g in got):
            print(f"k={k}: the engine placed {got} faces, not {k} each (overlap limit); rows use the real counts",
                  file=sys.stderr)
        for name, method in methods.items():
            coll = collate
            if name == "wm3dr":
                def coll(batch, _m=method):  # noqa: E306
                    if oracle is not None:
                        oracle.sample = batch[0]
                    b = collate(batch)
                    b.image = b.image.to(args.device)
                    return b
            if not warm:  # first call loads the detector networks / warms the kernels
                method.reconstruct(coll([samples[0]]))
            times[name][k], found[name][k] = time_images(_Synced(method, args.device), samples, coll)
            print(f"k={k:2d} {name:>14}: {statistics.fmean(times[name][k]):7.3f} s/image, faces found "
                  f"{found[name][k]} (GT {got})", flush=True)
        warm = True
    out = {}
    for name in methods:
        rows = summarise(times[name], found[name], gts)
        out[name] = rows
        label = (f"detect_regress ({args.inner} on {methods[name].crop_size}px crops)" if name == "detect_regress"
                 else f"wm3dr ({methods[name].hparams.backbone}, "
                      f"{'checkpoint ' + str(args.wm3dr_ckpt) if args.wm3dr_ckpt else 'untrained'}"
                      f"{', oracle maps' if oracle else ''}, {args.device})")
        print_table(f"{label}, {args.image_size}px images, {args.images} per k, {args.threads} threads", rows)
    if len(out) == 2:
        print(f"\n{'k':>3} {'DR T(k)/T(1)':>13} {'WM3DR T(k)/T(1)':>16} {'DR s / WM3DR s':>15}")
        for a, b in zip(out["detect_regress"], out["wm3dr"]):
            print(f"{a['k']:>3} {a['ratio']:>13.2f} {b['ratio']:>16.2f} {a['seconds_mean'] / b['seconds_mean']:>15.1f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


class _Synced:
    """``reconstruct`` that waits for the device to finish (CUDA timings)."""

    def __init__(self, method, device: str):
        self.method, self.device = method, device

    def reconstruct(self, batch):
        out = self.method.reconstruct(batch)
        if str(self.device).startswith("cuda"):
            torch.cuda.synchronize()
        return out


if __name__ == "__main__":
    sys.exit(main())
