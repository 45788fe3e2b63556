"""``b3f leaderboard``: show, export and compare results from the results store.

The ``b3f`` entry point wires this in with ``add_parser(subparsers)`` and dispatches to
``args.func(args)`` (= :func:`run`); ``python -m benchmark3dface.leaderboard.cli ...`` runs
it stand-alone.

::

    b3f leaderboard [--db URL|PATH] [--dataset D] [--split S] [--protocol P] [--method M ...]
                    [--metric NAME] [--all-runs] [--by yaw]
                    [--export md|csv|json|html --out PATH] [--gallery DIR]
    b3f leaderboard compare A B [--dataset D] [--split S] [--protocol P] [--metric NAME]
                    [--alpha 0.05] [--json]

``A``/``B`` are method names (the best run of each is compared) or ``run:ID``.
Exit status: 0 ok; 1 nothing to show or compare, or an unusable request (the message
says why); 2 the store cannot be opened (missing, or not a results store).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .compare import compare_methods
from .directions import direction_arrow
from .export import to_csv, to_json, to_markdown
from .migrations import SchemaError
from .report import build_report
from .stats import PairedComparison
from .store import ENV_VAR, ResultsStore, StoreError
from .table import build_tables, format_value, render
from .yawbins import YAW_CSV_COLUMNS, render_yaw_tables, yaw_bin_tables, yaw_csv_rows, yaw_markdown

EXPORT_FORMATS = ("md", "csv", "json", "html")


def _add_filters(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Filter options; a sub-command's copies default to SUPPRESS so that values given before
    the sub-command are not overwritten by its defaults."""
    d = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument("--db", help=f"store URL or SQLite path (default: ${ENV_VAR} or "
                   "./runs/leaderboard.sqlite)", **({"default": None} | d))
    p.add_argument("--dataset", help="only this dataset", **({"default": None} | d))
    p.add_argument("--split", help="only this split", **({"default": None} | d))
    p.add_argument("--protocol", help="only this protocol", **({"default": None} | d))
    p.add_argument("--metric", help="rank / compare on this metric (default: the protocol's "
                   "first metric / every per-sample metric)", **({"default": None} | d))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``leaderboard`` command (and its ``compare`` sub-command) to ``subparsers``."""
    p = subparsers.add_parser(
        "leaderboard",
        help="show, export and compare benchmark results",
        description="Rank finished runs per (dataset, split, protocol); export them or compare "
        "two methods with a paired Wilcoxon test.",
    )
    _add_filters(p, suppress=False)
    p.add_argument("--method", action="append", default=None,
                   help="only this method (repeatable)")
    p.add_argument("--all-runs", action="store_true",
                   help="show every finished run, not only the best run per method")
    p.add_argument("--by", choices=("yaw",), default=None,
                   help="yaw: also show each table per ground-truth |yaw| bin (0-30 / 30-60 / 60-90 "
                        "degrees; failures keep their penalty in their bin); with --export csv the "
                        "per-bin rows instead of the tables (md, json and html always hold them)")
    p.add_argument("--export", choices=EXPORT_FORMATS, default=None,
                   help="write the leaderboard as md, csv, json or a self-contained html report")
    p.add_argument("--out", default=None,
                   help="file for --export (default: stdout; required for html)")
    p.add_argument("--title", default="benchmark3dface leaderboard", help="html report title")
    p.add_argument("--gallery", default=None, metavar="DIR",
                   help="with --export html: add the gallery of the runs shown, read from "
                        "DIR/<method>/<config hash>/gallery.pt (DIR: the benchmark's --out)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of paired tests")
    sub = p.add_subparsers(dest="leaderboard_command", metavar="{compare}")
    c = sub.add_parser("compare", help="paired Wilcoxon test of two methods on shared samples",
                       description="Compare methods A and B (best run of each, or run:ID) on "
                       "the samples both evaluated, per metric with per-sample values.")
    c.add_argument("a", help="method name or run:ID")
    c.add_argument("b", help="method name or run:ID")
    _add_filters(c, suppress=True)
    c.add_argument("--alpha", type=float, default=argparse.SUPPRESS,
                   help="significance level (default 0.05)")
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run, leaderboard_command=None)
    return p


def _console() -> Console:
    if sys.stdout.isatty():
        return Console()
    return Console(width=max(160, shutil.get_terminal_size((160, 24)).columns), soft_wrap=False)


def _comparison_table(title: str, results: Sequence[PairedComparison]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in ("metric", "A", "B", "n shared", "failed A", "failed B", "mean A", "mean B",
                "mean A-B", "median A-B", "W", "p", "better"):
        t.add_column(col, justify="left" if col in ("metric", "A", "B", "better") else "right")
    for r in results:
        if r.n_shared == 0:
            verdict = "no shared samples"
        else:
            verdict = (r.better or "tie") + (f" (p < {r.alpha:g})" if r.significant else " (n.s.)")
        arrow = direction_arrow(r.direction) + ("?" if r.direction_source == "guessed" else "")
        t.add_row(
            f"{r.metric} {arrow}", r.label_a, r.label_b, str(r.n_shared), str(r.n_failed_a),
            str(r.n_failed_b), format_value(r.mean_a),
            format_value(r.mean_b), format_value(r.mean_diff), format_value(r.median_diff),
            format_value(r.statistic), "\u2014" if r.p_value is None else f"{r.p_value:.3g}",
            verdict, style="bold" if r.significant else None,
        )
    t.caption = ("Paired test on the samples both runs scored; failed A / B: samples each run "
                 "failed (left out of the test, counted at a penalty in the ranking score)."
                 + (" ? direction guessed from the name." if any(
                     r.direction_source == "guessed" for r in results) else ""))
    t.caption_justify = "left"
    return t


def _run_compare(args: argparse.Namespace, store: ResultsStore) -> int:
    groups = compare_methods(
        store, args.a, args.b, dataset=args.dataset, split=args.split, protocol=args.protocol,
        metric=args.metric, alpha=args.alpha,
    )
    if getattr(args, "json", False):
        print(json.dumps([g.as_dict() for g in groups], indent=2))
        return 0
    console = _console()
    for g in groups:
        title = (f"{g.dataset} / {g.split} / {g.protocol}: {args.a} (run {g.run_a.id}) vs "
                 f"{args.b} (run {g.run_b.id})")
        if g.results:
            console.print(_comparison_table(title, g.results))
            for r in g.results[:1]:
                for label, failed in ((r.label_a, r.failed_a), (r.label_b, r.failed_b)):
                    if failed:
                        shown = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
                        console.print(f"  {label} failed {len(failed)} sample(s) of {r.metric}: {shown}",
                                      markup=False, highlight=False)
        else:
            console.print(f"{title}: [yellow]no metric with per-sample values in both runs[/yellow]")
    return 0


def _run_table(args: argparse.Namespace, store: ResultsStore) -> int:
    runs = store.runs(dataset=args.dataset, split=args.split, protocol=args.protocol,
                      method=args.method)
    tables = build_tables(runs, metric=args.metric, best_only=not args.all_runs, store=store)
    filters = {"dataset": args.dataset, "split": args.split, "protocol": args.protocol,
               "method": ",".join(args.method) if args.method else None, "metric": args.metric}
    if getattr(args, "gallery", None) and args.export != "html":
        raise ValueError("--gallery needs --export html")
    by_yaw = getattr(args, "by", None) == "yaw"
    if args.export is None:
        if args.out:
            raise ValueError("--out needs --export md|csv|json|html")
        console = _console()
        render(tables, console)
        if by_yaw:
            render_yaw_tables(yaw_bin_tables(store, tables), console)
        return 0 if tables else 1
    if args.export == "md":
        yts = yaw_bin_tables(store, tables)
        text = to_markdown(tables) + ("\n" + yaw_markdown(yts) if yts else "")
    elif args.export == "csv":
        if by_yaw:
            import csv
            import io

            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=YAW_CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(yaw_csv_rows(yaw_bin_tables(store, tables)))
            text = buf.getvalue()
        else:
            text = to_csv(tables)
    elif args.export == "json":
        text = to_json(tables, meta={"store": store.display_url, "filters": filters,
                                      "schema_version": store.schema_version},
                       yaw_tables=yaw_bin_tables(store, tables))
    else:
        if not args.out:
            raise ValueError("--export html needs --out PATH (the report is one .html file)")
        gallery = None
        if getattr(args, "gallery", None):
            from .gallery import find_gallery_files, load_galleries

            if not Path(args.gallery).is_dir():
                raise ValueError(f"--gallery {args.gallery}: not a directory")
            gallery = load_galleries(find_gallery_files(Path(args.gallery), [r.run for t in tables for r in t.rows]))
            if not gallery.records and not gallery.problems:
                print(f"b3f leaderboard: no gallery.pt under {args.gallery} for the runs shown", file=sys.stderr)
        text = build_report(store, tables, title=args.title, filters=filters, alpha=args.alpha, gallery=gallery)
        for problem in gallery.problems if gallery is not None else ():
            print(f"gallery: {problem}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {args.export} ({len(tables)} table(s)) to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0 if tables else 1


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``b3f leaderboard`` command; returns the exit status."""
    try:
        store = ResultsStore(args.db, create=False)
    except (StoreError, SchemaError) as exc:
        print(f"b3f leaderboard: {exc}", file=sys.stderr)
        return 2
    try:
        if getattr(args, "leaderboard_command", None) == "compare":
            return _run_compare(args, store)
        return _run_table(args, store)
    except (ValueError, KeyError, StoreError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"b3f leaderboard: {message}", file=sys.stderr)
        return 1
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m benchmark3dface.leaderboard.cli [args]``."""
    parser = argparse.ArgumentParser(prog="b3f")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["leaderboard", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
