"""Synthetic occluders drawn in image space over a face: bars, sunglasses-like shapes and
hand-like blobs. Shapes are unions of ellipses and capsules placed from the face's 2D
landmarks (pixels, docs/conventions.md); masks are exact (binary) so the occlusion mask and
the per-face occlusion flag agree with the image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def _ellipse(c, a, b, theta) -> list[float]:
    return [float(c[0]), float(c[1]), float(a), float(b), float(theta)]


def _capsule(p0, p1, r) -> list[float]:
    return [float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1]), float(r)]


def occluder_shapes(rng: np.random.Generator, kind: str, lm68: np.ndarray, size: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Primitives of one occluder: ``ellipses (E, 5)`` = (cx, cy, a, b, theta) and
    ``capsules (C, 5)`` = (x0, y0, x1, y1, radius), all in pixels.

    Args:
        kind: ``bar`` | ``glasses`` | ``hand``.
        lm68: ``(68, 2)`` the face's landmarks (px).
        size: the face size in px (``sqrt(w h)`` of the landmark box).
    """
    ell: list[list[float]] = []
    cap: list[list[float]] = []
    centre = lm68.mean(0)
    if kind == "bar":
        c = centre + rng.standard_normal(2) * 0.25 * size
        ang = rng.uniform(0, math.pi)
        half = rng.uniform(0.3, 0.8) * size
        d = np.array([math.cos(ang), math.sin(ang)]) * half
        cap.append(_capsule(c - d, c + d, rng.uniform(0.05, 0.14) * size))
    elif kind == "glasses":
        el, er = lm68[36:42].mean(0), lm68[42:48].mean(0)
        axis = er - el
        dist = max(float(np.linalg.norm(axis)), 1e-3)
        theta = math.atan2(axis[1], axis[0])
        r = dist * rng.uniform(0.34, 0.44)
        a, b = r * rng.uniform(1.0, 1.2), r * rng.uniform(0.7, 0.9)
        ell.append(_ellipse(el, a, b, theta))
        ell.append(_ellipse(er, a, b, theta))
        cap.append(_capsule(el, er, 0.07 * r))
        u = axis / dist
        cap.append(_capsule(el - u * a * 0.9, el - u * (a + 0.6 * dist), 0.08 * r))
        cap.append(_capsule(er + u * a * 0.9, er + u * (a + 0.6 * dist), 0.08 * r))
    elif kind == "hand":
        anchors = [lm68[48:68].mean(0), lm68[8], lm68[3], lm68[13], lm68[30]]
        c = anchors[int(rng.integers(len(anchors)))] + rng.standard_normal(2) * 0.08 * size
        phi = rng.uniform(0, 2 * math.pi)  # direction the fingers point
        s = size * rng.uniform(0.8, 1.15)
        d = np.array([math.cos(phi), math.sin(phi)])
        n = np.array([-d[1], d[0]])
        ell.append(_ellipse(c, 0.2 * s, 0.17 * s, phi))
        for k, off in enumerate((-0.13, -0.045, 0.045, 0.13)):
            length = s * (0.26 + 0.06 * (1 - abs(off) / 0.13)) * rng.uniform(0.85, 1.1)
            base = c + d * 0.14 * s + n * off * s
            tip = base + (d * math.cos(0.12 * off / 0.13) + n * math.sin(0.12 * off / 0.13)) * length
            cap.append(_capsule(base, tip, 0.045 * s))
        side = 1.0 if rng.random() < 0.5 else -1.0
        base = c + n * side * 0.14 * s
        cap.append(_capsule(base, base + (n * side * 0.8 + d * 0.6) * 0.22 * s, 0.05 * s))
    else:
        raise ValueError(f"unknown occluder kind {kind!r}; known: bar, glasses, hand")
    return np.asarray(ell, dtype=np.float64).reshape(-1, 5), np.asarray(cap, dtype=np.float64).reshape(-1, 5)


def shapes_mask(ellipses: np.ndarray, capsules: np.ndarray, h: int, w: int) -> Tensor:
    """``(H, W)`` bool: pixel centres inside any of the primitives (vectorised)."""
    v = torch.arange(h, dtype=torch.float64)[:, None] + 0.5
    u = torch.arange(w, dtype=torch.float64)[None, :] + 0.5
    mask = torch.zeros(h, w, dtype=torch.bool)
    if len(ellipses):
        e = torch.from_numpy(ellipses)[:, :, None, None]
        cx, cy, a, b, th = e.unbind(1)
        du, dv = u - cx, v - cy
        c, s = torch.cos(th), torch.sin(th)
        x = du * c + dv * s
        y = -du * s + dv * c
        mask |= ((x / a) ** 2 + (y / b) ** 2 <= 1.0).any(0)
    if len(capsules):
        k = torch.from_numpy(capsules)[:, :, None, None]
        x0, y0, x1, y1, r = k.unbind(1)
        dx, dy = x1 - x0, y1 - y0
        t = (((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy).clamp_min(1e-12)).clamp(0.0, 1.0)
        px, py = u - (x0 + t * dx), v - (y0 + t * dy)
        mask |= (px * px + py * py <= r * r).any(0)
    return mask


def occluder_colour(rng: np.random.Generator, kind: str, h: int, w: int) -> Tensor:
    """``(3, H, W)`` colour layer of an occluder (only read under its mask)."""
    if kind == "glasses":
        base = rng.uniform(0.0, 0.15, size=3)
        top = base + rng.uniform(0.0, 0.2)
    elif kind == "hand":
        tone = rng.uniform(0.25, 0.95)
        base = np.array([tone, tone * rng.uniform(0.72, 0.85), tone * rng.uniform(0.55, 0.72)])
        top = base * rng.uniform(0.6, 1.0)
    else:
        base = rng.random(3)
        top = rng.random(3)
    theta = rng.uniform(0, 2 * math.pi)
    y = (torch.arange(h, dtype=torch.float32)[:, None] + 0.5) / h - 0.5
    x = (torch.arange(w, dtype=torch.float32)[None, :] + 0.5) / w - 0.5
    t = (0.5 + (math.cos(theta) * x + math.sin(theta) * y)).clamp(0.0, 1.0)
    b = torch.tensor(base, dtype=torch.float32)[:, None, None]
    tp = torch.tensor(top, dtype=torch.float32)[:, None, None]
    return (b + (tp - b) * t[None]).clamp(0.0, 1.0)
