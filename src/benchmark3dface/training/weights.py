"""Reading weight files safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_weights_file(path: str | Path, what: str, how_to_get: str) -> Any:
    """``torch.load(weights_only=True)`` of a user-given file (tensors and plain containers
    only: nothing in the file is executed). A missing file raises ``FileNotFoundError`` naming
    it, ``what`` it should be and ``how_to_get`` it; an unreadable one a ``ValueError``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} not found: {how_to_get}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{p}: cannot be read as {what} with torch.load(weights_only=True): {exc}") from exc
