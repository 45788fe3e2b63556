"""The protocol registry: built-in protocols plus entry-point plugins.

A protocol is a ``ProtocolMetric`` subclass (metrics/base.py) with a unique ``name``. Built-ins
are ``benchmark3dface.metrics.PROTOCOLS``; third-party protocols register through the
entry-point group ``benchmark3dface.protocols`` (``name = "package.module:ProtocolClass"``), so a
new metric is one class plus one entry point. A protocol says which ground-truth ``Sample``
fields it scores against with a class attribute ``needs`` (tuple of field names; any one of a
``"a|b"`` alternative suffices); a dataset must provide them for the protocol to apply.
``b3f protocols`` lists every protocol with its needs, unit and direction.
"""

from __future__ import annotations

from typing import Any

ENTRY_POINT_GROUP = "benchmark3dface.protocols"

#: what the built-in protocols score against (a protocol class may instead set ``needs``)
BUILTIN_NEEDS: dict[str, tuple[str, ...]] = {
    "true_error": ("vertices",),
    "aflw2000_nme": ("lm68|lm68_3d",),
    "aflw2000_dense_nme": ("vertices_cam",),
    "micc": ("scan_vertices",),
    "now": ("scan_vertices", "scan_landmarks7"),
    "now_metrical": ("scan_vertices", "scan_landmarks7"),
    "depth": ("depth",),
    "detection": ("centers",),
}

_EP: dict[str, type] = {}


def available_protocols() -> dict[str, type]:
    """name -> protocol class (built-ins first; an entry point never shadows a built-in)."""
    from importlib.metadata import entry_points

    from ..metrics import PROTOCOLS

    out: dict[str, type] = dict(PROTOCOLS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in out:
            continue
        if ep.name not in _EP:
            cls = ep.load()
            if getattr(cls, "name", None) != ep.name:
                raise ValueError(f"protocol entry point {ep.name!r} -> {ep.value}: the class's name is "
                                 f"{getattr(cls, 'name', None)!r}; they must match")
            _EP[ep.name] = cls
        out[ep.name] = _EP[ep.name]
    return out


def get_protocol(name: str) -> type:
    found = available_protocols()
    if name not in found:
        raise KeyError(f"unknown protocol {name!r}; known: {sorted(found)} (b3f protocols lists them)")
    return found[name]


def build(name: str, **options: Any):
    return get_protocol(name)(**options)


def needs_of(cls_or_name: type | str) -> tuple[str, ...]:
    cls = get_protocol(cls_or_name) if isinstance(cls_or_name, str) else cls_or_name
    return tuple(getattr(cls, "needs", None) or BUILTIN_NEEDS.get(cls.name, ()))


def applicable(cls_or_name: type | str, provides: tuple[str, ...]) -> bool:
    """True when every need (or one of each ``a|b`` alternative) is provided."""
    return all(any(alt in provides for alt in need.split("|")) for need in needs_of(cls_or_name))


def describe(cls: type) -> dict[str, Any]:
    """name, needs, units, directions of a protocol class (for ``b3f protocols``)."""
    units = dict(getattr(cls, "units", {}) or {})
    dirs = dict(getattr(cls, "directions", {}) or {})
    default_dir = "higher" if getattr(cls, "higher_is_better", False) else "lower"
    doc = (cls.__doc__ or "").strip().splitlines()
    return {"name": cls.name, "needs": needs_of(cls), "units": units,
            "directions": {k: dirs.get(k, default_dir) for k in (getattr(cls, "value_names", ()) or ())},
            "summary": doc[0] if doc else ""}


__all__ = ["BUILTIN_NEEDS", "applicable", "available_protocols", "build", "describe", "get_protocol", "needs_of"]
