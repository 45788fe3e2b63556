"""``b3f evaluate``: score a method (or a folder of meshes) on any registered dataset with every
applicable protocol, through the one evaluation path, and record the runs on the leaderboard.

    b3f evaluate --data aflw2000:/data/AFLW2000 --method meanface
    b3f evaluate --data now:/data/NoW --split val --meshes my_method_out/ --name mymethod
    b3f evaluate --data synthetic:single --method deep3d --ckpt runs/.../last.ckpt
    b3f evaluate --data micc:/data/MICC --method fitting --devices 2 --accelerator cpu   # DDP

``b3f protocols`` and ``b3f datasets`` list what is installed (built-ins and plugins).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="score a method or a mesh folder on a dataset; record on the leaderboard")
    p.add_argument("--data", required=True, metavar="NAME:ROOT",
                   help="a registered dataset and its root (b3f datasets), e.g. aflw2000:/data/AFLW2000, synthetic:single")
    p.add_argument("--split", default=None, help="dataset split (default: the dataset's default)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--method", help="an installed method (b3f methods)")
    who.add_argument("--meshes", type=Path, help="a folder with one OBJ/PLY per sample id (docs/evaluating-meshes.md)")
    who.add_argument("--list-ids", action="store_true", help="print the dataset's sample ids and exit")
    p.add_argument("--ckpt", type=Path, default=None, help="trained checkpoint of --method (weights only)")
    p.add_argument("--name", default=None, help="leaderboard name of the row (default: the method name / meshes:<folder>)")
    p.add_argument("--protocols", default=None, help="comma-separated protocols (default: every applicable one)")
    p.add_argument("--landmarks", default="detector",
                   help="test-time landmark source: detector (default) | gt_noise | gt (an oracle-input row)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this square size")
    p.add_argument("--size", type=int, default=100, help="synthetic: number of test samples")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset reader option (JSON value), repeatable; e.g. --option frame_stride=20")
    p.add_argument("--db", default=None, help="leaderboard URL or SQLite path (default $B3F_DB or runs/leaderboard.sqlite)")
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--devices", default="1", help="Lightning devices; >1 runs DDP")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--facemodel", default="procedural", help="face model of --method and of synthetic data")
    p.add_argument("--facemodel-path", default=None)
    return p


def _options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_method(name: str, ckpt: Path | None, facemodel: str, facemodel_path: str | None):
    """An installed method, with a checkpoint's weights when given (``weights_only=True``)."""
    import torch

    from ..methods.registry import installed_methods

    installed = installed_methods()
    if name not in installed:
        raise ValueError(f"method {name!r} is not installed; installed: {sorted(installed)} (b3f methods)")
    cls = installed[name].load()
    if ckpt is not None:
        if not ckpt.is_file():
            raise FileNotFoundError(f"checkpoint {ckpt} not found")
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle refusal or corrupt file: one line
            raise ValueError(f"{ckpt}: not a loadable weights-only checkpoint ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200]})") from None
        hparams = dict(state.get("hyper_parameters") or {})
        hparams.update(facemodel=facemodel, facemodel_path=facemodel_path)
        model = cls(**{k: v for k, v in hparams.items() if not k.startswith("_")})
        model.load_state_dict(state.get("state_dict", state))
        return model
    if cls.spec.trainable:
        print(f"b3f evaluate: note: {name} is trainable and no --ckpt was given: evaluating untrained weights")
    return cls(facemodel=facemodel, facemodel_path=facemodel_path)


def run(args) -> int:
    from ..evaluation.datasets import kind_of, parse_data_arg
    from ..evaluation.loop import EvaluationPlan, run_evaluation
    from ..evaluation.protocols import applicable, available_protocols

    spec, root = parse_data_arg(args.data)
    split = args.split or spec.default_split
    if split not in spec.splits:
        raise ValueError(f"dataset {spec.name!r}: unknown split {split!r}; choose one of {spec.splits}")
    kind = kind_of(spec, root)
    opts = _options(args.option)
    if spec.name == "synthetic":
        opts.setdefault("size", args.size)
        opts.setdefault("facemodel", args.facemodel)
        if args.facemodel_path:
            opts.setdefault("facemodel_path", args.facemodel_path)
    dataset = spec.build(root, split, args.image_size, **opts)
    if args.list_ids:
        for i in range(len(dataset)):
            item = dataset[i]
            if hasattr(item, "sample_id"):
                print(item.sample_id)
        return 0

    provides = tuple(spec.provides)
    known = available_protocols()
    if args.protocols:
        protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
        unknown = [p for p in protocols if p not in known]
        if unknown:
            raise ValueError(f"unknown protocols {unknown}; known: {sorted(known)} (b3f protocols)")
        bad = [p for p in protocols if not applicable(p, provides)]
        if bad:
            raise ValueError(f"protocols {bad} need ground truth dataset {spec.name!r} does not provide {provides}")
    else:
        protocols = [p for p in spec.protocols if p in known and applicable(p, provides)]
    if not protocols:
        raise ValueError(f"no protocol applies to dataset {spec.name!r} (it provides {provides or 'no ground truth'})")

    facemodel = None
    if args.meshes is not None:
        from ..evaluation.meshes import MeshFolder

        predictor = MeshFolder(args.meshes)
        inputs, name, version, ckpt = ("image",), args.name or f"meshes:{args.meshes.resolve().name}", "", None
    else:
        predictor = load_method(args.method, args.ckpt, args.facemodel, args.facemodel_path)
        facemodel = predictor.facemodel
        inputs, name = tuple(predictor.spec.inputs), args.name or args.method
        version, ckpt = predictor.spec.version, args.ckpt
        from ..evaluation.inputs import uses_ground_truth

        missing = [f for f in uses_ground_truth(inputs) if f not in provides]
        if missing:
            raise ValueError(f"method {args.method!r} reads ground truth {missing} as its input (an oracle); dataset "
                             f"{spec.name!r} provides {provides or 'none'}")
        if predictor.spec.input_kind != kind:
            raise ValueError(f"method {args.method!r} takes {predictor.spec.input_kind!r} input; dataset "
                             f"{spec.name!r} gives {kind!r} samples")
    from ..evaluation.landmarks import ROW_SUFFIX, build_landmark_source

    uses_lm = any(i in ("lm68", "lm5") for i in inputs)
    source = build_landmark_source(args.landmarks) if uses_lm else None
    if source is not None and args.name is None:
        name = f"{name}{ROW_SUFFIX[source.name]}"
    targets = None
    if spec.targets is not None:
        needs_scan = any(p in ("micc", "now", "now_metrical") for p in protocols)
        if facemodel is None and spec.name == "synthetic":
            from ..facemodel import load_facemodel

            facemodel = load_facemodel(args.facemodel, args.facemodel_path)
        targets = (lambda b: spec.targets(b, kind, facemodel, 1, needs_scan))
    plan = EvaluationPlan(protocols={p: {} for p in protocols}, inputs=inputs, landmark_source=source,
                          targets=targets, owner=name)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    t0 = time.perf_counter()
    results, n, trainer = run_evaluation(predictor, dataset, plan, batch_size=args.batch_size,
                                         num_workers=args.num_workers, accelerator=args.accelerator,
                                         devices=devices, num_nodes=args.num_nodes)
    seconds = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return 0
    from ..benchmark.runner import git_commit, hardware
    from ..leaderboard import open_store
    from ..leaderboard.records import RunInfo

    inputs_rec: dict[str, Any] = {"declared": list(inputs)}
    if source is not None:
        inputs_rec["landmarks"] = source.describe()
        if source.name != "detector":
            inputs_rec["oracle_input"] = ["landmarks"]
    config = {"method": name, "data": {"dataset": spec.name, "root": str(root), "split": split,
                                       "image_size": args.image_size, "options": opts},
              "inputs": inputs_rec, "checkpoint": str(ckpt) if ckpt else None,
              "meshes": str(args.meshes.resolve()) if args.meshes is not None else None}
    dataset_name = f"{spec.name}-{root}" if spec.name == "synthetic" else spec.name
    store = open_store(args.db)
    for p, res in results.items():
        info = RunInfo(method=name, dataset=dataset_name, protocol=p, split=split, config=config,
                       method_version=version, checkpoint=str(ckpt) if ckpt else None, git_commit=git_commit(),
                       hardware=hardware())
        store.record_run(info, res, on_duplicate="replace")
    print(f"b3f evaluate: {name} on {dataset_name}/{split}: {len(dataset)} samples in {seconds:.1f} s "
          f"({trainer.world_size} process(es)) -> {store.display_url}")
    for p, res in results.items():
        for line in res.summary().splitlines():
            print(f"  {p}: {line}")
        if res.failures:
            reasons: dict[str, int] = {}
            for r in res.failures.values():
                reasons[r.split(":")[0]] = reasons.get(r.split(":")[0], 0) + 1
            print(f"  {p}: {len(res.failures)} failed sample(s): " + ", ".join(f"{k} x{v}" for k, v in reasons.items()))
    problems = getattr(predictor, "problems", None)
    if problems:
        print(f"b3f evaluate: {len(problems)} mesh file(s) could not be read; first: {problems[0]}")
    if plan.errors:
        print(f"b3f evaluate: the method failed on {len(plan.errors)} batch(es); first: {plan.errors[0]}")
    return 0
