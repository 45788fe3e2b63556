"""``b3f protocols`` and ``b3f datasets``: what ``b3f evaluate`` can use (built-ins and plugins)."""

from __future__ import annotations

import argparse


HELP = {"protocols": "list evaluation protocols (built-in and plugins) with what each needs",
        "datasets": "list benchmark datasets (built-in and plugins) with what each provides"}


def add_catalog_parser(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP[name])
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.command == "protocols":
        from ..evaluation.protocols import available_protocols, describe

        rows = [describe(cls) for cls in available_protocols().values()]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        t = Table(title="protocols (entry-point group benchmark3dface.protocols)")
        for c in ("name", "needs (ground truth)", "values: unit, direction", "what"):
            t.add_column(c)
        for r in rows:
            vals = ", ".join(f"{k} {r['units'].get(k, '')} {'↓' if d == 'lower' else '↑'}".replace("  ", " ")
                             for k, d in r["directions"].items())
            t.add_row(r["name"], ", ".join(r["needs"]) or "-", vals, r["summary"])
        console.print(t)
        return 0
    from ..evaluation.datasets import available_datasets

    specs = available_datasets()
    if args.json:
        print(json.dumps([{"name": s.name, "kind": s.kind, "provides": list(s.provides), "protocols": list(s.protocols),
                           "splits": list(s.splits), "description": s.description} for s in specs.values()], indent=2))
        return 0
    t = Table(title="datasets (entry-point group benchmark3dface.datasets); use: b3f evaluate --data NAME:ROOT")
    for c in ("name", "kind", "splits", "provides", "default protocols", "what"):
        t.add_column(c)
    for s in specs.values():
        t.add_row(s.name, s.kind, ", ".join(s.splits), ", ".join(s.provides) or "-", ", ".join(s.protocols) or "-",
                  s.description)
    console.print(t)
    return 0
