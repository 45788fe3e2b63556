"""Collate ``Sample`` records into a batch (itself a ``Sample`` whose fields are batched).

Rules, field by field: tensors of equal shape are stacked (a new leading batch axis); tensors of
different shapes (multi-face images with different face counts, scans of different sizes) stay a
list; ints/floats/bools become tensors; dicts and strings become lists. Sets and multi-view
triplets of equal size therefore batch to ``(B, V, ...)`` and multi-face per-face fields to a
list of ``(F_i, ...)`` tensors; ``face_counts`` in ``meta`` of the batch gives F_i.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import Tensor

from .sample import Sample


def _collate_field(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if len(present) != len(values):
        return list(values)
    first = present[0]
    if isinstance(first, Tensor):
        if all(v.shape == first.shape for v in values):
            return torch.stack(values)
        return list(values)
    if isinstance(first, bool):
        return torch.tensor(values, dtype=torch.bool)
    if isinstance(first, (int, float)):
        return torch.tensor(values)
    return list(values)


def collate_samples(samples: list[Sample]) -> Sample:
    """Batch a list of samples of one kind."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    kinds = {s.kind for s in samples}
    if len(kinds) != 1:
        raise ValueError(f"cannot batch samples of different kinds {sorted(kinds)}")
    out = {}
    for f in fields(Sample):
        vals = [getattr(s, f.name) for s in samples]
        if f.name == "kind":
            out[f.name] = samples[0].kind
        elif f.name in ("sample_id", "camera", "meta"):
            out[f.name] = vals
        else:
            out[f.name] = _collate_field(vals)
    batch = Sample(**out)
    if batch.kind == "multiface":
        batch.meta = [dict(m, face_count=int(s.centers.shape[0]) if s.centers is not None else 0)
                      for m, s in zip(batch.meta, samples)]
    return batch


def batch_size(batch: Sample) -> int:
    return len(batch.sample_id) if isinstance(batch.sample_id, list) else 1
