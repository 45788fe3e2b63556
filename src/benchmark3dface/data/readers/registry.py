"""Reader registry: ``READERS[name] -> reader class`` and :func:`get_reader`.

Built-in readers register themselves with :func:`register_reader` when
``benchmark3dface.data.readers`` is imported. Third-party packages can add readers without
editing this package through the entry-point group ``benchmark3dface.readers``
(``name = "package.module:ReaderClass"``); they are loaded on the first unknown-name lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

ENTRY_POINT_GROUP = "benchmark3dface.readers"

READERS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_reader(name: str) -> Callable[[T], T]:
    """Class decorator adding a reader to :data:`READERS` under ``name`` (also sets
    ``cls.name``)."""

    def deco(cls: T) -> T:
        if name in READERS and READERS[name] is not cls:
            raise ValueError(f"reader name {name!r} already registered by {READERS[name]!r}")
        cls.name = name
        READERS[name] = cls
        return cls

    return deco


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in READERS:
            READERS[ep.name] = ep.load()


def get_reader(name: str) -> type:
    """The reader class registered as ``name`` (e.g. ``"aflw2000"``)."""
    key = name.lower().replace("-", "_")
    if key not in READERS:
        _load_entry_points()
    if key not in READERS:
        raise KeyError(f"unknown dataset reader {name!r}; available: {sorted(READERS)}")
    return READERS[key]


def available_readers() -> list[str]:
    _load_entry_points()
    return sorted(READERS)
