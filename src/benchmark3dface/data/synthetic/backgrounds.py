"""Cheap random backgrounds: plain colour, multi-octave value noise, linear gradients, periodic
textures (stripes, checkers). ``(3, H, W)`` float32 in [0, 1]; parameters come from a numpy
generator, pixels are computed with element-wise torch ops (no thread-dependent reductions).

The ``faces`` kind is a noise/gradient base on which the engine renders other (unlabelled)
faces behind the main one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _grid(h: int, w: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates normalised to [-0.5, 0.5] (x right, y down), shape (H, W)."""
    y = (torch.arange(h, dtype=torch.float32) + 0.5) / h - 0.5
    x = (torch.arange(w, dtype=torch.float32) + 0.5) / w - 0.5
    return x[None, :].expand(h, w), y[:, None].expand(h, w)


def _colour(rng: np.random.Generator, n: int = 1) -> Tensor:
    return torch.from_numpy(rng.random((n, 3)).astype(np.float32))


def plain(rng: np.random.Generator, h: int, w: int) -> Tensor:
    return _colour(rng)[0][:, None, None].expand(3, h, w).clone()


def value_noise(rng: np.random.Generator, h: int, w: int) -> Tensor:
    """Sum of 3 octaves of bilinearly upsampled random grids around a random base colour."""
    base = _colour(rng)[0][:, None, None]
    out = base.expand(3, h, w).clone()
    cells = int(rng.integers(2, 6))
    amp = float(rng.uniform(0.2, 0.6))
    for octave in range(3):
        k = min(cells * 4 ** octave, max(h, w))
        g = torch.from_numpy(rng.random((1, 3, k, k)).astype(np.float32) - 0.5)
        up = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)[0]
        out = out + up * (amp / (2 ** octave))
    return out.clamp_(0.0, 1.0)


def gradient(rng: np.random.Generator, h: int, w: int) -> Tensor:
    """Linear gradient between two random colours along a random direction."""
    c = _colour(rng, 2)
    theta = float(rng.uniform(0, 2 * math.pi))
    gain = float(rng.uniform(0.7, 2.0))
    x, y = _grid(h, w)
    t = (0.5 + (math.cos(theta) * x + math.sin(theta) * y) * gain).clamp(0.0, 1.0)
    return c[0][:, None, None] + (c[1] - c[0])[:, None, None] * t[None]


def texture(rng: np.random.Generator, h: int, w: int) -> Tensor:
    """Stripes or checkers (soft or hard) between two colours, plus a little noise."""
    c = _colour(rng, 2)
    freq = float(rng.uniform(2.0, 24.0))
    theta = float(rng.uniform(0, math.pi))
    phase = float(rng.uniform(0, 2 * math.pi))
    checker = bool(rng.random() < 0.4)
    hard = bool(rng.random() < 0.5)
    x, y = _grid(h, w)
    a = torch.sin((math.cos(theta) * x + math.sin(theta) * y) * (2 * math.pi * freq) + phase)
    if checker:
        a = a * torch.sin((-math.sin(theta) * x + math.cos(theta) * y) * (2 * math.pi * freq) + phase)
    t = (a > 0).float() if hard else 0.5 + 0.5 * a
    out = c[0][:, None, None] + (c[1] - c[0])[:, None, None] * t[None]
    noise = torch.from_numpy(rng.random((1, 3, 8, 8)).astype(np.float32) - 0.5)
    out = out + 0.15 * F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out.clamp_(0.0, 1.0)


_MAKERS = {"plain": plain, "noise": value_noise, "gradient": gradient, "texture": texture}


def make_background(rng: np.random.Generator, kind: str, h: int, w: int) -> Tensor:
    """``(3, H, W)`` background of ``kind`` (``faces`` -> a noise or gradient base)."""
    if kind == "faces":
        kind = "noise" if rng.random() < 0.5 else "gradient"
    if kind not in _MAKERS:
        raise ValueError(f"unknown background kind {kind!r}; known: {sorted(_MAKERS) + ['faces']}")
    return _MAKERS[kind](rng, h, w)
