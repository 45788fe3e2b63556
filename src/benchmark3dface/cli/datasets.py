"""``b3f datasets`` (see cli/catalog.py)."""

from __future__ import annotations

from .catalog import add_catalog_parser, run  # noqa: F401


def add_parser(subparsers) -> None:
    add_catalog_parser(subparsers, "datasets")
