"""DF-MVR's 101-point 3D landmark set, defined per face model.

The official DF-MVR code reads 101 annotated 3D points of Pixel-Face's scans (the 7 alignment
points are its indices 47, 50, 53, 56, 41, 79, 85, ``losses.DFMVR_LM101_ALIGN_INDICES``); their
semantics are not published with the paper, so this package defines its own 101-point set for
any face model (own definition, documented in docs/methods/dfmvr.md):

- points 0-67: the model's iBUG-68 landmark vertices (same order and semantics);
- points 68-100: 33 further vertices spread over the face by farthest-point sampling on the mean
  shape (front-facing vertices with a face-region label), started from the nose tip (iBUG 30),
  the 68 landmarks counting as already chosen. Deterministic for a given model.

The 7 alignment points (``ALIGN7``) are the semantic counterparts usual for 3D face scans:
eye corners 36, 39, 42, 45, nose tip 30, mouth corners 48, 54 (indices into the 101 set, which
starts with the 68).  On synthetic data the ground-truth 101 points are the GT mesh's vertices
at these indices, so they are exact.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

NUM_POINTS = 101
#: indices (into the 101 set) of the 7 points the similarity alignment is fitted on
ALIGN7: tuple[int, ...] = (36, 39, 42, 45, 30, 48, 54)
_CACHE: dict[tuple[str, int], Tensor] = {}


def landmarks101(facemodel) -> Tensor:
    """``(101,)`` long vertex indices of the 101-point set of ``facemodel`` (cached per model)."""
    key = (getattr(facemodel, "name", "?"), int(facemodel.num_vertices))
    if key in _CACHE:
        return _CACHE[key]
    mean = facemodel.mean_shape.detach().cpu().numpy().astype(np.float64)
    lm68 = facemodel.landmarks68.detach().cpu().numpy().astype(np.int64)
    regions = facemodel.regions.detach().cpu().numpy()
    front = mean[:, 2] > np.percentile(mean[:, 2], 20)
    cand = np.flatnonzero(front & (regions > 0))
    chosen = list(lm68)
    d = np.min(np.linalg.norm(mean[cand, None, :] - mean[None, chosen, :], axis=-1), axis=1)
    d = np.minimum(d, np.linalg.norm(mean[cand] - mean[lm68[30]], axis=1))
    while len(chosen) < NUM_POINTS:
        i = int(np.argmax(d))
        chosen.append(int(cand[i]))
        d = np.minimum(d, np.linalg.norm(mean[cand] - mean[cand[i]], axis=1))
    out = torch.as_tensor(np.asarray(chosen, dtype=np.int64))
    _CACHE[key] = out
    return out


__all__ = ["ALIGN7", "NUM_POINTS", "landmarks101"]
