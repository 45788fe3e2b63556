"""``b3f synth``: write synthetic dataset shards to disk.

Example::

    b3f synth --mode multiview -n 1000 --out data/synth/train --split train --image-size 224 \
        --workers 2 --set view_yaw=45

The folder gets ``manifest.json`` (the generator config), PNG images and one npz + JSON per
shard; ``ShardDataset(out)`` / ``SyntheticDataModule(shards=...)`` read it back.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .synthetic.config import MODES, PRESETS, PROJECTIONS
    SPLITS = ("train", "val", "test")  # synthetic.seeding.SPLITS (kept import-free for --help)

    p = subparsers.add_parser(
        "synth", help="write synthetic dataset shards to disk",
        description="Render synthetic faces with ground truth and write them as shards "
                    "(images + npz + manifest) readable by ShardDataset / SyntheticDataModule.")
    p.add_argument("--mode", choices=MODES, default=None, help="sample kind (default: single, or the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="start from a seed method's settings (deng, cnet, dfmvr, wm3dr, gao, richardson)")
    p.add_argument("-n", "--num", type=int, required=True, help="number of samples to write")
    p.add_argument("--out", required=True, help="output folder (one split)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--split", choices=SPLITS, default="train", help="identity split (default train)")
    p.add_argument("--image-size", type=int, default=None, help="square image side (default 224; 512 multiface)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--shard-size", type=int, default=256, help="samples per shard (default 256)")
    p.add_argument("--format", choices=("png", "jpg"), default="png",
                   help="image files: png (lossless, identical samples) or jpg (smaller)")
    p.add_argument("--facemodel", default="procedural", help="face model source (procedural, bfm, ict)")
    p.add_argument("--facemodel-path", default=None, help="face model files (bfm/ict)")
    p.add_argument("--projection", choices=PROJECTIONS, default=None)
    p.add_argument("--grayscale", action="store_true", default=None)
    p.add_argument("--set-size", type=int, default=None, help="images per identity set (mode set)")
    p.add_argument("--view-yaw", default=None,
                   help="multiview side-view yaw in degrees, or 'random' (10-45)")
    p.add_argument("--labelled-fraction", type=float, default=None,
                   help="share of labelled samples (semi-supervised); default 1")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="any other generator option (SynthConfig field), JSON values; repeatable")
    p.add_argument("--store-vertices", action="store_true",
                   help="store the GT meshes (large); by default ShardDataset recomputes them from the GT coefficients")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The generator options dict from parsed arguments."""
    opts: dict[str, Any] = {}
    if args.preset:
        opts["preset"] = args.preset
    for key, val in (("mode", args.mode), ("image_size", args.image_size),
                     ("projection", args.projection), ("grayscale", args.grayscale),
                     ("set_size", args.set_size), ("labelled_fraction", args.labelled_fraction)):
        if val is not None:
            opts[key] = val
    if args.view_yaw is not None:
        opts["view_yaw"] = None if str(args.view_yaw).lower() == "random" else float(args.view_yaw)
    for item in args.options:
        if "=" not in item:
            raise SystemExit(f"b3f synth: --set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        opts[k.strip()] = _parse_value(v.strip())
    return opts


def run(args: argparse.Namespace) -> int:
    from .synthetic.config import SynthConfig
    from .synthetic.shards import write_shards

    if args.num < 1:
        raise SystemExit("b3f synth: -n must be >= 1")
    try:
        config = SynthConfig.from_dict(build_config(args))
    except ValueError as e:
        raise SystemExit(f"b3f synth: {e}") from e
    path = write_shards(args.out, config, split=args.split, num_samples=args.num, seed=args.seed,
                        facemodel=args.facemodel, facemodel_path=args.facemodel_path,
                        shard_size=args.shard_size, workers=args.workers, image_format=args.format,
                        progress=not args.no_progress, overwrite=args.overwrite,
                        store_vertices=args.store_vertices)
    print(f"wrote {args.num} {config.mode} samples ({args.split}, seed {args.seed}) -> {path}")
    return 0
