"""Reading Lightning checkpoints safely, with one-line errors.

Every checkpoint load in the project passes ``weights_only`` explicitly: ``True`` (tensors and
plain containers only, nothing in the file is executed) unless the user says the file is
trusted. A file that ``weights_only`` loading refuses raises :class:`UntrustedCheckpointError`
(``"<file>: not a trusted checkpoint: it holds <what> ..."``); an empty, truncated or foreign
file raises :class:`CheckpointReadError`. Both are ``ValueError``\\ s whose message is one line
naming the file, so the command line prints them without a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


class CheckpointReadError(ValueError):
    """A checkpoint file cannot be read (empty, truncated, not a PyTorch file)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


class UntrustedCheckpointError(CheckpointReadError):
    """``weights_only`` loading refused the file: it holds pickled Python objects."""

    def __init__(self, path: str | Path, problem: str, hint: str = "") -> None:
        self.hint = hint
        CheckpointReadError.__init__(self, path, f"not a trusted checkpoint: {problem}" + (f"; {hint}" if hint else ""))
        self.problem = problem


def refused_global(exc: BaseException) -> str | None:
    """What ``torch.load(weights_only=True)`` refused, from its (long) message: e.g.
    ``"Unsupported global: GLOBAL argparse.Namespace"``; None when it is not such an error."""
    text = str(exc)
    if "Weights only load failed" not in text and "WeightsUnpickler" not in text:
        return None
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\.\s|\n|$)", text)
    return m.group(1).strip() if m else "objects outside the allowed tensor/container types"


def looks_like_torch_file(path: str | Path) -> bool:
    """Whether ``path`` starts like a ``torch.save`` file: a zip archive (the format since
    PyTorch 1.6) or a pickle (protocol >= 2 starts with byte 0x80: the legacy format)."""
    import zipfile

    p = Path(path)
    if zipfile.is_zipfile(p):
        return True
    with open(p, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80


def load_checkpoint(path: str | Path, weights_only: bool = True, hint: str = "",
                    map_location: Any = "cpu") -> Any:
    """``torch.load`` a checkpoint with ``weights_only`` (memory-mapped when the file allows),
    turning every failure into a one-line error naming the file.

    Raises:
        FileNotFoundError: no such file.
        UntrustedCheckpointError: ``weights_only`` refused the file (``hint`` says how to
            proceed if the user trusts it).
        CheckpointReadError: empty, truncated or not a PyTorch file.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} not found")
    if p.stat().st_size == 0:
        raise CheckpointReadError(p, "empty file (0 bytes), not a checkpoint")
    if not looks_like_torch_file(p):
        with open(p, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise CheckpointReadError(p, "truncated or corrupt checkpoint (a zip archive without its "
                                             "directory; was the copy or the save interrupted?)")
        raise CheckpointReadError(p, "not a PyTorch checkpoint (neither a torch.save zip archive nor a "
                                     "legacy torch.save pickle)")
    try:
        try:
            return torch.load(p, map_location=map_location, weights_only=weights_only, mmap=True)
        except RuntimeError as exc:
            if "mmap can only be used" not in str(exc):
                raise
            return torch.load(p, map_location=map_location, weights_only=weights_only)  # legacy format
    except Exception as exc:  # noqa: BLE001 - anything an unreadable file raises becomes one line
        what = refused_global(exc) if weights_only else None
        if what is not None:
            raise UntrustedCheckpointError(p, f"weights_only loading refuses it ({what})", hint) from None
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointReadError(p, f"cannot read the checkpoint, truncated or not a PyTorch file "
                                     f"({type(exc).__name__}{': ' + first if first else ''})") from None


__all__ = ["CheckpointReadError", "UntrustedCheckpointError", "load_checkpoint", "looks_like_torch_file",
           "refused_global"]
