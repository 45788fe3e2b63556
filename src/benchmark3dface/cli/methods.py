"""``b3f methods``: list the installed method plugins."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("methods", help="list installed methods (entry-point group benchmark3dface.methods)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def run(args) -> int:
    from ..methods.registry import installed_methods

    rows = []
    for name, im in installed_methods().items():
        try:
            spec = im.load().spec
            rows.append({"name": name, "kind": spec.input_kind, "trainable": spec.trainable,
                         "requires": list(spec.requires), "outputs": list(spec.outputs),
                         "description": spec.description, "package": im.distribution,
                         "entry_point": im.entry_point.value})
        except Exception as exc:  # a broken plugin is listed with its error, never hidden
            rows.append({"name": name, "kind": "?", "error": f"{type(exc).__name__}: {exc}",
                         "package": im.distribution, "entry_point": im.entry_point.value})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} installed methods")
    for col in ("name", "kind", "trainable", "requires", "package", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], str(r.get("trainable", "?")), ", ".join(r.get("requires", [])),
                      r["package"], r.get("description") or f"[red]{r.get('error')}[/red]")
    Console().print(table)
    return 0
