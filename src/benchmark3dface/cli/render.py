"""``b3f render``: render random faces of a morphable model to a PNG contact sheet.

A quick visual check of a face model and the renderer: one row per face, one column per pass
(lit RGB, normals, parse labels, depth).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("render", help="render random faces of a morphable model to a PNG")
    p.add_argument("--source", default="procedural", help="face model source: procedural | bfm | ict")
    p.add_argument("--path", default=None, help="model file/folder for bfm / ict")
    p.add_argument("-n", "--num", type=int, default=6, help="number of faces")
    p.add_argument("--size", type=int, default=224, help="image size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-yaw", type=float, default=60.0, help="yaw range in degrees (+-)")
    p.add_argument("--out", type=Path, default=Path("faces.png"), help="output PNG")
    return p


def render_sheet(model, num: int, size: int, seed: int, max_yaw_deg: float):
    """(num, 4 passes, 3, size, size) uint8-ready float images in [0, 1]."""
    import torch

    from ..geometry.camera import PerspectiveCamera
    from ..render.renderer import render_passes

    g = torch.Generator().manual_seed(seed)
    lay = model.layout
    parts = model.sample_coeffs(num, generator=g)
    angles = torch.zeros(num, 3)
    angles[:, 1] = torch.linspace(-max_yaw_deg, max_yaw_deg, num) * math.pi / 180
    angles[:, 0] = (torch.rand(num, generator=g) - 0.5) * 0.3
    sh = torch.zeros(num, 27)
    sh[:, [1, 10, 19]] = (torch.rand(num, 1, generator=g) - 0.5) * 0.6  # y light, same for R, G, B
    sh[:, [3, 12, 21]] = (torch.rand(num, 1, generator=g) - 0.5) * 0.6
    parts.update(angles=angles, sh=sh[:, : lay.sh], trans=torch.zeros(num, 3))
    cam = PerspectiveCamera.deng(size)
    geo = model.decode(lay.join(parts), cam)
    out = render_passes(geo.projected, model.triangles, size, ("rgb", "mask", "normal", "label", "depth"),
                        vertex_colors=geo.colors.clamp(0, 1), vertex_normals=geo.normals,
                        vertex_labels=model.regions, background=1.0, cull_backfaces=True)
    normal = (out["normal"] * 0.5 + 0.5) * out["mask"] + (1 - out["mask"])
    palette = torch.tensor([[1, 1, 1], [0.85, 0.7, 0.6], [0.4, 0.25, 0.1], [0.5, 0.3, 0.1], [0.1, 0.4, 0.9],
                            [0.1, 0.6, 0.9], [0.9, 0.6, 0.2], [0.9, 0.2, 0.3], [0.7, 0.1, 0.2], [0.2, 0.05, 0.05]])
    label = palette[out["label"]].permute(0, 3, 1, 2)
    depth = out["depth"]
    m = out["mask"] > 0
    lo, hi = depth[m].min(), depth[m].max()
    depth = torch.where(m, 1 - (depth - lo) / (hi - lo + 1e-6) * 0.9, torch.ones_like(depth)).expand(-1, 3, -1, -1)
    return torch.stack([out["rgb"].clamp(0, 1), normal, label, depth], 1)


def run(args) -> int:
    import numpy as np
    from PIL import Image

    from ..facemodel import load_facemodel

    model = load_facemodel(args.source, args.path)
    sheet = render_sheet(model, args.num, args.size, args.seed, args.max_yaw)
    n, k, _, h, w = sheet.shape
    grid = sheet.permute(0, 3, 1, 4, 2).reshape(n * h, k * w, 3).numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(args.out)
    print(f"wrote {args.out} ({n} faces x rgb / normal / parse labels / depth, {h}x{w} px each)")
    return 0
