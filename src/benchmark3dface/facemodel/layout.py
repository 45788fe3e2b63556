"""Coefficient layouts: where each group of a flat coefficient vector lives."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

GROUPS = ("id", "exp", "tex", "angles", "sh", "trans")


@dataclass(frozen=True)
class CoeffLayout:
    """Sizes of the coefficient groups, in order ``id, exp, tex, angles, sh, trans``.

    The default is Deng'19's 257-vector (80 identity, 64 expression, 80 albedo, 3 Euler angles,
    27 SH = 9 bands x RGB, 3 translation).
    """

    id: int = 80
    exp: int = 64
    tex: int = 80
    angles: int = 3
    sh: int = 27
    trans: int = 3

    @property
    def size(self) -> int:
        return sum(getattr(self, g) for g in GROUPS)

    def slice(self, group: str) -> slice:
        if group not in GROUPS:
            raise KeyError(f"unknown coefficient group {group!r}; groups are {GROUPS}")
        start = 0
        for g in GROUPS:
            if g == group:
                return slice(start, start + getattr(self, g))
            start += getattr(self, g)
        raise AssertionError

    def split(self, coeffs: Tensor) -> dict[str, Tensor]:
        """(..., size) -> dict of (..., group_size) views."""
        if coeffs.shape[-1] != self.size:
            raise ValueError(f"coefficient vector has {coeffs.shape[-1]} values, layout {self} needs {self.size}")
        return {g: coeffs[..., self.slice(g)] for g in GROUPS}

    def join(self, parts: dict[str, Tensor], batch_shape=(), dtype=torch.float32, device=None) -> Tensor:
        """Inverse of ``split``; missing groups are zero."""
        ref = next(iter(parts.values()), None)
        if ref is not None:
            batch_shape, dtype, device = ref.shape[:-1], ref.dtype, ref.device
        chunks = []
        for g in GROUPS:
            n = getattr(self, g)
            chunks.append(parts[g] if g in parts else torch.zeros(*batch_shape, n, dtype=dtype, device=device))
        return torch.cat(chunks, -1)

    def zeros(self, *batch: int, dtype=torch.float32, device=None) -> Tensor:
        return torch.zeros(*batch, self.size, dtype=dtype, device=device)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DENG_LAYOUT = CoeffLayout()
