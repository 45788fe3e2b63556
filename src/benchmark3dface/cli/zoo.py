"""``b3f zoo``: train, list and verify the model zoo (docs/zoo.md).

::

    b3f zoo train NAME|RECIPE [--foreground] [--max-steps N] [--accelerator cpu|gpu|auto]
                              [--work-dir runs/zoo] [--zoo-dir zoo]
    b3f zoo stop NAME         # the background run finishes its step, saves, exits
    b3f zoo list [--zoo-dir zoo] [--work-dir runs/zoo]
    b3f zoo verify [NAME ...] [--no-recompute] [--zoo-dir zoo]

``train`` starts (or resumes) the recipe's training in the background and returns; progress and
ETA go to ``<work-dir>/<name>/train.log``. Exit status: 0 ok; 1 a check failed (verify) or
nothing to do; 2 bad input (one line naming the problem).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("zoo", help="train, list and verify reference checkpoints (the model zoo)",
                              description="The model zoo: reference checkpoints trained by the recipes in "
                                          "experiments/zoo/ (docs/zoo.md).")
    sub = p.add_subparsers(dest="zoo_command", metavar="{train,stop,list,verify}", required=True)
    t = sub.add_parser("train", help="run or resume a recipe's training (background by default)")
    t.add_argument("recipe", help="recipe name (experiments/zoo/NAME.yaml) or path")
    t.add_argument("--foreground", action="store_true", help="train in this process instead of the background")
    t.add_argument("--max-steps", type=int, default=None,
                   help="stop this session at this step (resumable; exports only at the recipe's max_steps)")
    t.add_argument("--accelerator", default=None, help="override the recipe's trainer accelerator (default auto: "
                   "a GPU when present, else the CPU)")
    s = sub.add_parser("stop", help="stop a background training after its current step (resumable)")
    s.add_argument("recipe")
    sub.add_parser("list", help="zoo entries (manifests) and trainings in progress")
    v = sub.add_parser("verify", help="check each entry: manifest, sha256, size, weights-only load, and the "
                       "validation error reproduced on its fixed sample")
    v.add_argument("names", nargs="*", help="entries to verify (default: all)")
    v.add_argument("--no-recompute", action="store_true", help="skip re-evaluating the validation sample")
    for q in (t, s, sub.choices["list"], v):
        q.add_argument("--zoo-dir", default=None, help="zoo directory (default: $B3F_ZOO_DIR, ./zoo, the repo's zoo/)")
        q.add_argument("--work-dir", default="runs/zoo", help="where trainings keep checkpoints and logs")
    p.set_defaults(func=run)
    return p


def _zoo_dir(args: argparse.Namespace) -> Path:
    from ..zoo import default_zoo_dir

    return Path(args.zoo_dir) if args.zoo_dir else default_zoo_dir()


def _train(args: argparse.Namespace) -> int:
    from ..zoo.recipes import find_recipe, load_recipe
    from ..zoo.train import run_dir_of, start_background, train

    recipe = load_recipe(args.recipe)
    if args.foreground:
        entry = train(recipe, work_dir=args.work_dir, zoo_dir=_zoo_dir(args), max_steps=args.max_steps,
                      accelerator=args.accelerator)
        if entry is None:
            print(f"{recipe.name}: paused (resumable); run `b3f zoo train {recipe.name}` again to continue")
        else:
            print(f"{recipe.name}: exported {entry.weights_path} (manifest {entry.manifest_path})")
        return 0
    argv = ["zoo", "train", str(find_recipe(args.recipe).resolve()), "--work-dir", str(Path(args.work_dir).resolve()),
            "--zoo-dir", str(_zoo_dir(args).resolve())]
    if args.max_steps is not None:
        argv += ["--max-steps", str(args.max_steps)]
    if args.accelerator:
        argv += ["--accelerator", args.accelerator]
    try:
        pid = start_background(recipe, argv, work_dir=args.work_dir)
    except RuntimeError as exc:
        print(f"b3f zoo: {exc}", file=sys.stderr)
        return 1
    log = run_dir_of(recipe, args.work_dir) / "train.log"
    print(f"{recipe.name}: training in the background (pid {pid}); progress and ETA: {log}; "
          f"stop with `b3f zoo stop {recipe.name}`, resume by running this command again")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from ..zoo.recipes import load_recipe
    from ..zoo.train import stop_background

    recipe = load_recipe(args.recipe)
    pid = stop_background(recipe, args.work_dir)
    if pid is None:
        print(f"{recipe.name}: no background training is running")
        return 1
    print(f"{recipe.name}: asked pid {pid} to stop after its current step (it saves a resumable checkpoint)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..zoo import zoo_entries
    from ..zoo.recipes import load_recipe, recipe_dirs
    from ..zoo.train import format_seconds, progress_of

    zoo = _zoo_dir(args)
    entries = zoo_entries(zoo)
    print(f"zoo {zoo}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    for e in entries:
        m = e.manifest
        v = m.get("validation") or {}
        err = v.get("true_error_mm")
        print(f"  {e.row_name:<22} method {m.get('method')}, {m.get('steps')} steps, "
              f"{format_seconds(float(m.get('wall_time_s') or 0))} on {(m.get('hardware') or {}).get('gpu', 'CPU')}, "
              f"{(m.get('bytes') or 0) / 2**20:.1f} MB {m.get('dtype')}, sha256 {str(m.get('sha256'))[:12]}, "
              f"commit {str(m.get('git_commit'))[:10]}, validation true error "
              f"{'?' if err is None else f'{err:.4f}'} mm on {v.get('size')} x {v.get('image_size')} px")
    seen = set()
    for d in recipe_dirs():
        for f in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            if f.stem in seen:
                continue
            seen.add(f.stem)
            try:
                r = load_recipe(f)
            except (ValueError, FileNotFoundError) as exc:
                print(f"  recipe {f}: {exc}")
                continue
            pr = progress_of(r, args.work_dir)
            print(f"  recipe {r.name:<14} {r.method}, {r.max_steps} steps: {pr['state']}"
                  + (f" -- {pr['last_line']}" if pr["last_line"] else ""))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..zoo import verify_entry, zoo_entries

    zoo = _zoo_dir(args)
    entries = [e for e in zoo_entries(zoo) if not args.names or e.name in args.names]
    missing = set(args.names) - {e.name for e in entries}
    if missing:
        print(f"b3f zoo verify: no entry {', '.join(sorted(missing))} in {zoo}", file=sys.stderr)
        return 1
    if not entries:
        print(f"zoo {zoo}: no entries to verify")
        return 0
    bad = 0
    for e in entries:
        problems = verify_entry(e, recompute=not args.no_recompute)
        if problems:
            bad += 1
            for p in problems:
                print(f"FAIL {e.name}: {p}")
        else:
            v = e.manifest["validation"]
            print(f"ok   {e.name}: sha256, size, manifest"
                  + ("" if args.no_recompute else f", validation {v['true_error_mm']:.4f} mm reproduced "
                     f"(tolerance {v.get('tolerance_mm')} mm)"))
    return 1 if bad else 0


def run(args: argparse.Namespace) -> int:
    from ..zoo import ZooError

    try:
        return {"train": _train, "stop": _stop, "list": _list, "verify": _verify}[args.zoo_command](args)
    except ZooError as exc:
        print(f"b3f zoo: {exc}", file=sys.stderr)
        return 2


__all__ = ["add_parser", "run"]
