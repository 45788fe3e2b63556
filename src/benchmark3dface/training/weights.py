"""Reading weight files safely."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch


def load_weights_file(path: str | Path, what: str, how_to_get: str) -> Any:
    """``torch.load(weights_only=True)`` of a user-given file (tensors and plain containers
    only: nothing in the file is executed). A missing file raises ``FileNotFoundError`` naming
    it, ``what`` it should be and ``how_to_get`` it; an unreadable one a one-line ``ValueError``
    (the first sentence of torch's own, often multi-line, message)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} not found: {how_to_get}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        cause = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = cause.splitlines()[0].split(". ")[0][:160] if cause else type(exc).__name__
        if first.startswith("Weights only load failed"):
            first += " (a pickled nn.Module? save its state_dict() instead)"
        raise ValueError(f"{p}: cannot be read as {what} with torch.load(weights_only=True): {first}") from exc


def load_lightning_checkpoint(path: str | Path, what: str, how_to_get: str) -> dict[str, Any]:
    """A Lightning checkpoint (``load_weights_file``): a dict with ``state_dict`` (and usually
    ``hyper_parameters``); anything else is refused with one line naming the file."""
    blob = load_weights_file(path, what, how_to_get)
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"{Path(path).expanduser()}: expected {what} (a Lightning checkpoint: a dict with 'state_dict')")
    return blob


def load_submodule_from_checkpoint(module: torch.nn.Module, path: str | Path, prefix: str, what: str,
                                   how_to_get: str, must_match: dict[str, Any] | None = None,
                                   allow_unexpected: bool = True) -> None:
    """Loads the ``<prefix>.*`` weights of another method's Lightning checkpoint into ``module``
    (e.g. a stage-1 network into stage 2). ``must_match``: hyper-parameter -> this model's value;
    a checkpoint recording a different value is refused (one line naming the file). Missing keys
    (and unexpected ones unless ``allow_unexpected``) are refused too."""
    p = Path(path).expanduser()
    blob = load_lightning_checkpoint(p, what, how_to_get)
    hp = blob.get("hyper_parameters", {}) or {}
    for key, value in (must_match or {}).items():
        if key in hp and hp[key] != value:
            raise ValueError(f"{p}: {what} has {key}={hp[key]!r}, this model {value!r}")
    head = prefix + "."
    state = {k[len(head):]: v for k, v in blob["state_dict"].items() if k.startswith(head)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or (unexpected and not allow_unexpected):
        raise ValueError(f"{p}: {what} does not fit ({len(missing)} missing, {len(unexpected)} unexpected keys, "
                         f"e.g. {(list(missing) or list(unexpected))[:3]})")
