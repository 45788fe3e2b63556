"""Throughput of the synthetic engine vs what a quick-profile ResNet-18 method consumes.

Measures, on CPU:

- synthetic images/s through a DataLoader with ``--workers`` worker processes (one torch
  thread each, the DataLoader default; batches of 16, fetched with the dataset's batched
  ``__getitems__``) for ``single`` at 64 (the quick profile's size), 128 and 224 and
  ``multiface`` at 512;
- what a ResNet-18 (timm, ``num_classes=257``) consumes at the same resolution: forward +
  backward + Adam step on batches of 16 with ``--threads`` torch threads (images/s);
- what the quick training profile of the ResNet-18 R-Net (experiments/quick/deep3d.yaml: the
  hybrid loss renders every batch) consumes at the same resolution;

and prints both ratios (target: synthetic >= 2x the quick profile's consumption). Run on 2 cores::

    .venv/bin/python benchmarks/synth.py            # default: procedural model, 2 workers, 2 threads
    .venv/bin/python benchmarks/synth.py --quick    # fewer samples

Timings on a shared machine are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

CASES = (("single", 64), ("single", 128), ("single", 224), ("multiface", 512))


def synth_rate(model, mode: str, size: int, samples: int, workers: int, batch: int) -> float:
    from benchmark3dface.data.datamodules import SampleCollate
    from benchmark3dface.data.synthetic import SyntheticFaceDataset

    ds = SyntheticFaceDataset({"mode": mode, "image_size": size}, "train", samples + 2 * batch * max(workers, 1),
                              seed=0, facemodel=model)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=SampleCollate(),
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(max(workers, 1)):  # warm-up: worker start and first batches
        next(it)
    n, t0 = 0, time.perf_counter()
    while n < samples:
        b = next(it)
        n += len(b.sample_id)
    dt = time.perf_counter() - t0
    del it
    return n / dt


def step_rate(loss_fn, opt, steps: int, batch: int) -> float:
    """Images/s of ``steps`` optimiser steps (loss, backward, step) after one warm-up step."""
    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def resnet_rate(size: int, steps: int, threads: int, batch: int = 16) -> float:
    import timm

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = timm.create_model("resnet18", num_classes=257)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        x = torch.rand(batch, 3, size, size)
        target = torch.zeros(batch, 257)

        return step_rate(lambda: (net(x) - target).square().mean(), opt, steps, batch)
    finally:
        torch.set_num_threads(old)


def deep3d_rate(model, size: int, steps: int, threads: int, batch: int = 16) -> float | None:
    """Images/s of the quick-profile Deng R-Net training step (experiments/quick/deep3d.yaml:
    ResNet-18 + the hybrid loss with its renders) at ``size`` px on synthetic batches, or None
    when the built-in methods are not installed."""
    try:
        from b3f_methods.deep3d import Deep3D
    except ImportError:
        return None
    import yaml
    from pathlib import Path

    from benchmark3dface.data.datamodules import SampleCollate
    from benchmark3dface.data.synthetic import SyntheticFaceDataset

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "experiments/quick/deep3d.yaml").read_text())
    args = dict(cfg["model"]["init_args"], image_size=size)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = Deep3D(**args)
        net.shape_frozen = False
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        ds = SyntheticFaceDataset({"mode": "single", "image_size": size}, "train", batch, seed=1, facemodel=model)
        b = SampleCollate()([ds[i] for i in range(batch)])

        return step_rate(lambda: net.compute_loss(b)[0].total, opt, steps, batch)
    finally:
        torch.set_num_threads(old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--facemodel", default="procedural")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer samples/steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from benchmark3dface.facemodel import load_facemodel

    model = load_facemodel(args.facemodel)
    print(f"face model {model.name}: {model.num_vertices} vertices, {model.num_triangles} triangles")
    print(f"synthetic: DataLoader, {args.workers} workers x 1 thread; ResNet-18: {args.threads} threads, "
          f"fwd+bwd+Adam, batch 16")
    print("deep3d-quick: the quick-profile R-Net training step (ResNet-18 + hybrid loss) at the same size")
    print(f"{'case':<16}{'synth img/s':>12}{'resnet18 img/s':>16}{'ratio':>8}{'deep3d-quick img/s':>20}{'ratio':>8}")
    for mode, size in CASES:
        samples = {64: 256, 128: 192, 224: 96, 512: 24}[size] // (2 if args.quick else 1)
        steps = {64: 8, 128: 6, 224: 3, 512: 1}[size]
        s = synth_rate(model, mode, size, samples, args.workers, batch=16 if size < 512 else 2)
        r = resnet_rate(size, steps, args.threads)
        d = deep3d_rate(model, size, steps, args.threads) if mode == "single" else None
        tail = f"{d:>20.1f}{s / d:>8.2f}" if d else f"{'-':>20}{'-':>8}"
        print(f"{mode + '@' + str(size):<16}{s:>12.1f}{r:>16.1f}{s / r:>8.2f}{tail}", flush=True)


if __name__ == "__main__":
    main()
