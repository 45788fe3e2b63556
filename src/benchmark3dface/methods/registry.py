"""Method discovery through the ``benchmark3dface.methods`` entry-point group.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."benchmark3dface.methods"]
    mymethod = "my_package.module:MyMethod"

where ``MyMethod`` subclasses ``benchmark3dface.methods.ReconstructionMethod`` and sets a
``spec = MethodSpec(name="mymethod", ...)`` class attribute. The core never imports a method by
name; everything goes through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

GROUP = "benchmark3dface.methods"


class MethodNotFound(KeyError):
    pass


@dataclass
class InstalledMethod:
    name: str
    entry_point: EntryPoint

    @property
    def distribution(self) -> str:
        dist = getattr(self.entry_point, "dist", None)
        return dist.name if dist is not None else "?"

    def load(self):
        from .base import ReconstructionMethod

        cls = self.entry_point.load()
        if not (isinstance(cls, type) and issubclass(cls, ReconstructionMethod)):
            raise TypeError(f"entry point {self.entry_point.value!r} ({GROUP}:{self.name}) is not a "
                            f"ReconstructionMethod subclass")
        if cls.spec.name != self.name:
            raise ValueError(f"entry point name {self.name!r} differs from its spec name {cls.spec.name!r}")
        return cls


def installed_methods() -> dict[str, InstalledMethod]:
    """All methods registered in the entry-point group, by name (sorted)."""
    eps = entry_points(group=GROUP)
    return {ep.name: InstalledMethod(ep.name, ep) for ep in sorted(eps, key=lambda e: e.name)}


def get_method(name: str):
    """The method class registered under ``name``."""
    methods = installed_methods()
    if name not in methods:
        raise MethodNotFound(f"no method {name!r} installed; installed: {sorted(methods)} "
                             f"(plugins register in the entry-point group {GROUP!r})")
    return methods[name].load()
