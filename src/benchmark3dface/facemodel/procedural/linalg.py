"""Deterministic float64 helpers shared by the procedural model's builders."""

from __future__ import annotations

import numpy as np


def principal_modes(columns: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of a zero-mean linear model ``x = columns.T @ z``, ``z ~ N(0, I)``.

    Args:
        columns: (K, M) float64, one variation direction per row, scaled by its std.
        count: number of modes to keep (<= K).
    Returns:
        modes (count, M) scaled by their std (so mode coefficients are ~ N(0, 1)), ordered by
        decreasing variance, each with its largest-magnitude entry positive (a deterministic
        sign); stds (count,).
    """
    cols = np.asarray(columns, dtype=np.float64)
    if count > cols.shape[0]:
        raise ValueError(f"asked for {count} modes from {cols.shape[0]} variation directions")
    gram = cols @ cols.T
    gram = 0.5 * (gram + gram.T)
    w, vec = np.linalg.eigh(gram)
    order = np.argsort(-w, kind="stable")[:count]
    modes = vec[:, order].T @ cols
    big = np.argmax(np.abs(modes), axis=1)
    modes *= np.sign(modes[np.arange(count), big])[:, None]
    return modes, np.sqrt(np.clip(w[order], 0.0, None))


def gaussian_centres(uv: np.ndarray, spacing: float, rng: np.random.Generator, jitter: float = 0.3) -> np.ndarray:
    """Jittered square grid of centres (K, 2) covering the points uv (N, 2) (mm).

    Only centres within one spacing of some point are kept. The jitter (fraction of the spacing,
    uniform draws from ``rng``) breaks the grid's mirror symmetry so no two modes tie exactly."""
    lo, hi = uv.min(0) - spacing / 2, uv.max(0) + spacing / 2
    gu = np.arange(lo[0], hi[0] + 1e-9, spacing)
    gv = np.arange(lo[1], hi[1] + 1e-9, spacing)
    c = np.stack(np.meshgrid(gu, gv, indexing="xy"), -1).reshape(-1, 2)
    c = c + (rng.random(c.shape) - 0.5) * 2.0 * jitter * spacing
    from scipy.spatial import cKDTree

    d, _ = cKDTree(uv).query(c)
    return c[d < spacing]


def quantize(x: np.ndarray, step: float) -> np.ndarray:
    """Round to a multiple of ``step`` and cast to float32 (stable bytes across platforms
    unless a value lies within float64 rounding noise of a rounding boundary)."""
    return (np.rint(np.asarray(x, dtype=np.float64) / step) * step).astype(np.float32)
