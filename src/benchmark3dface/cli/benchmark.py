"""``b3f benchmark``: train and evaluate methods on the embedded synthetic benchmark, store the
runs on the leaderboard, print the table and write the HTML report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("benchmark", help="train + evaluate methods on the synthetic benchmark; leaderboard")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names (default: every installed method)")
    p.add_argument("--profile", default="quick", help="quick (CPU minutes) | paper | a benchmark.yaml path")
    p.add_argument("--db", default=None, help="leaderboard URL or SQLite path (default $B3F_DB or runs/leaderboard.sqlite)")
    p.add_argument("--out", type=Path, default=Path("runs/benchmark"), help="checkpoints, logs and reports")
    p.add_argument("--force", action="store_true", help="re-run methods that already have finished runs")
    p.add_argument("--test-size", type=int, default=None, help="override the test-set sizes")
    p.add_argument("--image-size", type=int, default=None, help="override the test image size")
    p.add_argument("--max-train-steps", type=int, default=None, help="cap training steps (smoke runs)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto, cpu, gpu)")
    p.add_argument("--devices", default="1", help="Lightning devices (e.g. 1, 2, auto)")
    p.add_argument("--no-wandb", action="store_true", help="CSV logging only")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for PyTorch, training and evaluation (default: one per core, less one per "
                        "data worker while training)")
    p.add_argument("--verbose", action="store_true",
                   help="also print library warnings and Lightning's messages (always in <out>/benchmark.log)")
    p.add_argument("--landmarks", default=None, choices=("detector", "gt_noise"),
                   help="test-time landmark source of methods that take landmarks (default: the profile's; "
                        "ground-truth landmarks only as the profile's input_variants rows)")
    p.add_argument("--config", action="append", default=[], metavar="METHOD=FILE[:NAME]",
                   help="run METHOD with another config (e.g. a loss ablation) and record it on the "
                        "leaderboard as NAME (default METHOD@<file stem>); repeatable")
    return p


def run(args) -> int:
    from rich.console import Console
    from rich.markup import escape

    from ..console import route_library_output

    log_file = args.out / "benchmark.log"
    route_library_output(log_file, verbose=args.verbose)
    from ..benchmark import BenchmarkRunner, load_profile
    from ..leaderboard import open_store

    from ..threads import set_threads

    set_threads(args.threads)
    console = Console()
    profile = load_profile(args.profile).override(args.test_size, args.image_size)
    if args.landmarks:
        profile.landmarks = args.landmarks
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    variants = {}
    for item in args.config:
        method, eq, rest = item.partition("=")
        if not eq or not method or not rest:
            raise SystemExit(f"--config expects METHOD=FILE[:NAME], got {item!r}")
        path, _, name = rest.partition(":")
        variants[method] = (Path(path), name or f"{method}@{Path(path).stem}")
    store = open_store(args.db)
    runner = BenchmarkRunner(profile, store, args.out, force=args.force, max_train_steps=args.max_train_steps,
                             accelerator=args.accelerator, devices=devices, use_wandb=not args.no_wandb,
                             variants=variants)
    t0 = time.perf_counter()
    console.print(f"[bold]b3f benchmark[/bold] profile={profile.name} store={escape(store.display_url)} "
                  f"(library messages: {escape(str(log_file))})")
    for line in runner.plan(methods):
        console.print(escape(line))
    outcomes = runner.run(methods)
    total = time.perf_counter() - t0
    for o in outcomes:
        colour = {"done": "green", "skipped": "cyan", "incompatible": "yellow"}.get(o.status, "red")
        extra = f" train {o.train_seconds:.0f}s, eval {o.eval_seconds_per_sample * 1000:.0f} ms/sample" if o.status == "done" else ""
        where = f" on {o.dataset}" if getattr(o, "dataset", "") else ""
        console.print(f"  [{colour}]{o.status:12s}[/{colour}] {escape(o.method)}{escape(where)}{extra} {escape(o.message)}")
    datasets = sorted({profile.dataset_name(k) for k in profile.test_sets})
    from ..leaderboard.table import build_tables, render

    names = [o.method for o in outcomes if o.status in ("done", "skipped")]
    runs = store.runs(dataset=datasets, method=names or None)
    tables = build_tables(runs, store=store)
    render(tables, console)
    from ..leaderboard.fidelity import fidelity_html, fidelity_rows, rich_fidelity

    fidelity = fidelity_rows(store, runs)
    if fidelity:
        console.print(rich_fidelity(fidelity))
    if not args.no_report and tables:
        from ..leaderboard.gallery import find_gallery_files, load_galleries
        from ..leaderboard.report import build_report

        out = args.out / "report.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        gallery = load_galleries(find_gallery_files(args.out, [r.run for t in tables for r in t.rows]))
        out.write_text(build_report(store, tables, title=f"benchmark3dface: {profile.name} benchmark",
                                    filters={"dataset": ", ".join(datasets)},
                                    extra_html=fidelity_html(fidelity), gallery=gallery), encoding="utf-8")
        for problem in gallery.problems:
            console.print(f"[yellow]gallery:[/yellow] {escape(problem)}")
        console.print(f"report: {out}")
    console.print(f"total {total / 60:.1f} min")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"{len(failed)} method(s) failed: " + ", ".join(f"{o.method} ({o.message})" for o in failed), file=sys.stderr)
        return 1
    return 0
