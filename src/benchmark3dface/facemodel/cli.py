"""``b3f facemodel``: inspect, export and build morphable models.

- ``b3f facemodel info [--source procedural|bfm|ict] [--path P] [--json]``
- ``b3f facemodel export [--source ...] [--path P] --out DIR [--random N --seed S] [--format obj|ply]``
  writes ``mean.<fmt>`` (the mean face) and ``random_000.<fmt>`` ... (faces with identity,
  expression and albedo coefficients drawn from the model's prior), model frame, millimetres, with
  albedo vertex colours (no pose, no lighting).
- ``b3f facemodel build-bfm --bfm-dir DIR --out FILE`` builds Deng's ``BFM_model_front.mat``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import SOURCES

DESCRIPTION = (__doc__ or "").replace("``", "")


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=SOURCES, default="procedural",
                   help="model source (default: procedural, the embedded model)")
    p.add_argument("--path", default=None,
                   help="bfm: BFM_model_front.mat (or its folder); ict: the ICT-FaceKit FaceXModel folder")
    p.add_argument("--face-area", choices=("face", "narrow"), default="face",
                   help="ict only: full face area (9409 vertices) or the narrow one (6706)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``facemodel`` and its sub-commands on the ``b3f`` sub-parsers."""
    parser = subparsers.add_parser("facemodel", help="inspect, export or build morphable models",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="facemodel_command", metavar="ACTION")
    sub.required = True

    info = sub.add_parser("info", help="print a model's facts (units, size, layout, extents, regions)")
    _add_source_args(info)
    info.add_argument("--json", action="store_true", help="print the facts as JSON")

    export = sub.add_parser("export", help="write the mean face and random faces as meshes")
    _add_source_args(export)
    export.add_argument("--out", required=True, type=Path, help="output folder")
    export.add_argument("--random", type=int, default=0, metavar="N", help="number of random faces (default 0)")
    export.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    export.add_argument("--format", choices=("obj", "ply"), default="obj", help="mesh format (default obj)")

    build = sub.add_parser(
        "build-bfm", help="build Deng's BFM_model_front.mat from the BFM09 files",
        description="Build BFM_model_front.mat from: 01_MorphableModel.mat (BFM09, University of Basel, "
                    "https://faces.dmi.unibas.ch/bfm, after registration); Exp_Pca.bin (Guo et al., "
                    "github.com/Juyong/3DFace); std_exp.txt, BFM_front_idx.mat, BFM_exp_idx.mat, "
                    "facemodel_info.mat (the BFM folder of github.com/microsoft/Deep3DFaceReconstruction).")
    build.add_argument("--bfm-dir", required=True, type=Path, help="folder holding the six input files")
    build.add_argument("--out", required=True, type=Path, help="output .mat file (or folder)")
    return parser


def _load(args: argparse.Namespace):
    from . import load_facemodel

    kwargs: dict[str, Any] = {}
    if args.source == "ict":
        kwargs["face_area"] = args.face_area
    if args.source == "procedural":
        if args.path is not None:
            raise ValueError("--path is not used by the procedural model")
        return load_facemodel("procedural", **kwargs)
    return load_facemodel(args.source, args.path, **kwargs)


def _print_info(info: dict[str, Any]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        for k, v in info.items():
            print(f"{k}: {v}")
        return
    table = Table(title=f"face model: {info.get('name')}", show_header=True)
    table.add_column("fact")
    table.add_column("value")
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif isinstance(v, list):
            v = " x ".join(str(x) for x in v) if k == "extent_mm" else ", ".join(str(x) for x in v)
        table.add_row(k, str(v))
    Console().print(table)


def _export(model, out: Path, n_random: int, seed: int, fmt: str) -> list[Path]:
    import torch

    from ..geometry.meshio import write_mesh

    out.mkdir(parents=True, exist_ok=True)
    tri = model.triangles.cpu().numpy()
    lay = model.layout
    with torch.no_grad():
        zeros = {g: torch.zeros(1, getattr(lay, g)) for g in ("id", "exp", "tex")}
        written = [write_mesh(out / f"mean.{fmt}", model.shape(zeros["id"], zeros["exp"])[0],
                              tri, model.albedo(zeros["tex"])[0])]
        gen = torch.Generator().manual_seed(seed)
        for i in range(n_random):  # one face at a time: face i does not depend on n_random
            c = model.sample_coeffs(1, generator=gen)
            written.append(write_mesh(out / f"random_{i:03d}.{fmt}", model.shape(c["id"], c["exp"])[0], tri,
                                      model.albedo(c["tex"])[0]))
    return written


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``b3f facemodel ...`` command; returns the exit status."""
    try:
        if args.facemodel_command == "build-bfm":
            from .bfm import build_bfm_front

            path = build_bfm_front(args.bfm_dir, args.out)
            print(f"wrote {path}")
            return 0
        model = _load(args)
        if args.facemodel_command == "info":
            info = model.info()
            if args.json:
                print(json.dumps(info, indent=2, default=str))
            else:
                _print_info(info)
            return 0
        if args.facemodel_command == "export":
            if args.random < 0:
                raise ValueError("--random must be >= 0")
            files = _export(model, args.out, args.random, args.seed, args.format)
            print(f"wrote {len(files)} mesh(es) ({model.name}, millimetres, model frame) to {args.out}")
            return 0
    except (FileNotFoundError, ValueError) as exc:
        print(f"b3f facemodel {args.facemodel_command}: error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unknown facemodel action {args.facemodel_command!r}")
