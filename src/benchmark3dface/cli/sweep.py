"""``b3f sweep FILE [--trials N] [--backend optuna|wandb] [--study-dir DIR]``: a wandb sweep YAML,
run offline with Optuna (default) or with wandb (``wandb sweep`` + ``wandb agent``).

See benchmark3dface.training.sweeps and docs/training.md.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="run a wandb sweep YAML offline with Optuna (or with wandb)",
        description="Hyper-parameter sweep of b3f fit trials from a wandb sweep YAML (e.g. "
                    "experiments/sweeps/deep3d_quick.yaml). optuna: offline, study in --study-dir "
                    "(re-running resumes it), trials recorded on the leaderboard. wandb: runs `wandb sweep` "
                    "and `wandb agent` (needs an account).")
    p.add_argument("file", type=Path, help="wandb sweep YAML")
    p.add_argument("--trials", type=int, default=None,
                   help="optuna: the study's total number of trials (default: run_cap, the grid size, or 10); "
                        "wandb: the agent's --count")
    p.add_argument("--backend", choices=("optuna", "wandb"), default="optuna")
    p.add_argument("--study-dir", type=Path, default=None,
                   help="optuna: study folder (study.db, summary.json, trial_NNN/); default runs/sweeps/<name>")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap every trial's trainer.max_steps (quick checks)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra LightningCLI argument for every trial, e.g. trainer.max_time=00:00:02:00; repeatable")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--db", default=None, help="leaderboard URL or SQLite path (default $B3F_DB or runs/leaderboard.sqlite)")
    p.add_argument("--no-record", action="store_true", help="do not record the trials on the leaderboard")
    p.add_argument("--dry-run", action="store_true",
                   help="print the b3f commands of the first --trials (default 3) trials and exit (nothing runs)")
    return p


def run(args) -> int:
    from ..training import sweeps

    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.backend == "wandb":
        return sweeps.run_wandb(args.file, args.trials)
    if args.dry_run:
        for argv in sweeps.dry_run(args.file, args.trials or 3, seed=args.seed, max_steps=args.max_steps,
                                   overrides=args.set):
            print("b3f " + " ".join(shlex.quote(a) for a in argv))
        return 0
    summary = sweeps.run_optuna(args.file, trials=args.trials, study_dir=args.study_dir, max_steps=args.max_steps,
                                overrides=args.set, db=args.db, record=not args.no_record, seed=args.seed,
                                log=lambda line: print(line, flush=True))
    for line in summary.lines():
        print(line)
    print(f"saved: {summary.study_dir / 'summary.json'} (study: {summary.storage}; "
          f"re-run the same command to resume or raise --trials)")
    if summary.best is not None and not args.no_record:
        db = f" --db {shlex.quote(args.db)}" if args.db else ""
        print(f"leaderboard: b3f leaderboard{db} --split val --protocol {shlex.quote(summary.metric)} --all-runs")
    return 0 if summary.best is not None else 1
