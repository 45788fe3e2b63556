"""Matching predicted faces to ground-truth faces in multi-face images."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def match_faces(pred_centers: Tensor | np.ndarray, gt_centers: Tensor | np.ndarray,
                max_dist: Tensor | np.ndarray | float) -> list[int | None]:
    """One-to-one assignment of predicted faces to GT faces by centre distance (Hungarian).

    Args:
        pred_centers: (P, 2) predicted face centres (pixels); rows with NaN never match.
        gt_centers: (G, 2) GT face centres (pixels).
        max_dist: a pair farther apart than this (pixels; scalar or per GT face (G,)) never
            matches.
    Returns:
        For each GT face the index of its predicted face, or None (a missed face).
    """
    p = np.asarray(pred_centers.detach().cpu() if isinstance(pred_centers, Tensor) else pred_centers, np.float64)
    g = np.asarray(gt_centers.detach().cpu() if isinstance(gt_centers, Tensor) else gt_centers, np.float64)
    p = p.reshape(-1, 2)
    g = g.reshape(-1, 2)
    out: list[int | None] = [None] * len(g)
    if len(p) == 0 or len(g) == 0:
        return out
    md = np.broadcast_to(np.asarray(max_dist.detach().cpu() if isinstance(max_dist, Tensor) else max_dist,
                                    np.float64), (len(g),))
    d = np.linalg.norm(g[:, None, :] - p[None, :, :], axis=-1)
    allowed = np.isfinite(d) & (d <= md[:, None])
    big = 1e12
    cost = np.where(allowed, d, big)
    rows, cols = linear_sum_assignment(cost)
    for r, c in zip(rows, cols):
        if allowed[r, c]:
            out[r] = int(c)
    return out


def landmark_center(lm: Tensor) -> Tensor:
    """(..., K, 2) -> (..., 2) centre of the landmark bounding box (NaN rows ignored)."""
    lo = torch.where(torch.isfinite(lm), lm, torch.full_like(lm, torch.inf)).amin(-2)
    hi = torch.where(torch.isfinite(lm), lm, torch.full_like(lm, -torch.inf)).amax(-2)
    return 0.5 * (lo + hi)
