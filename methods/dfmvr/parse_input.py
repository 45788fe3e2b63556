"""The face-parse input channel of DF-MVR at test time, from the 68 input landmarks.

DF-MVR concatenates a face-parse label map (one-hot, 10 classes) to each view's RGB. The paper
gets it from a BiSeNet trained on CelebAMask-HQ; the benchmark's test-time inputs are the image
and the landmarks of the run's landmark source (never the dataset's parse annotations), so this
method draws the parse from the 68 landmarks with the same polygons
``facemodel.regions.regions_from_landmarks`` uses to label the model's vertices (brows: a band
around the brow line; eyes: the widened eye polygons; nose: bridge to alae; lips and inner mouth:
the lip contours), the face region being the jaw line closed over the raised brows. The same
function feeds training (landmarks of the training samples), so training and test inputs match.
The exact synthetic parse labels are used only as *loss targets* (weight map, mask loss).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.path import Path
from torch import Tensor

from benchmark3dface.facemodel.regions import L_BROW, L_EYE, L_LIP, MOUTH, NOSE, R_BROW, R_EYE, SKIN, U_LIP

NUM_CLASSES = 10


def _near_polyline(points: np.ndarray, line: np.ndarray, radius: float) -> np.ndarray:
    d = np.full(points.shape[0], np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
        d = np.minimum(d, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return d < radius


def parse_from_lm68_np(lm: np.ndarray, size: int) -> np.ndarray:
    """``(68, 2)`` pixel landmarks -> ``(size, size)`` int64 parse labels (pixel centres at
    ``j + 0.5``); all-zero when the landmarks are not finite."""
    out = np.zeros((size, size), dtype=np.int64)
    lm = np.asarray(lm, dtype=np.float64)
    if not np.isfinite(lm).all():
        return out
    ys, xs = np.mgrid[0:size, 0:size]
    pts = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
    lab = out.reshape(-1)
    eye_dist = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    # face: jaw line closed over the brows raised by half the brow-to-nose-tip distance
    up = (lm[17:27].mean(0) - lm[30]) * 0.5
    face = np.concatenate([lm[0:17], (lm[17:27] + up)[::-1]])
    lab[Path(face).contains_points(pts)] = SKIN
    brow_r = 0.09 * eye_dist
    lab[_near_polyline(pts, lm[17:22], brow_r)] = L_BROW
    lab[_near_polyline(pts, lm[22:27], brow_r)] = R_BROW

    def widen(poly: np.ndarray, factor: float) -> np.ndarray:
        c = poly.mean(0)
        return c + (poly - c) * factor

    lab[Path(widen(lm[36:42], 1.15)).contains_points(pts)] = L_EYE
    lab[Path(widen(lm[42:48], 1.15)).contains_points(pts)] = R_EYE
    ala_l, ala_r = lm[31] + (lm[31] - lm[33]) * 0.45, lm[35] + (lm[35] - lm[33]) * 0.45
    side_l = np.array([lm[39, 0] * 0.35 + lm[27, 0] * 0.65, (lm[27, 1] + lm[31, 1]) / 2])
    side_r = np.array([lm[42, 0] * 0.35 + lm[27, 0] * 0.65, (lm[27, 1] + lm[35, 1]) / 2])
    lab[Path(np.stack([lm[27], side_r, ala_r, lm[34], lm[33], lm[32], ala_l, side_l])).contains_points(pts)] = NOSE
    upper = np.concatenate([lm[48:55], lm[[64, 63, 62, 61, 60]]])
    lower = np.concatenate([lm[[54, 55, 56, 57, 58, 59, 48]], lm[[60, 67, 66, 65, 64]]])
    lab[Path(upper).contains_points(pts)] = U_LIP
    lab[Path(lower).contains_points(pts)] = L_LIP
    lab[Path(lm[60:68]).contains_points(pts)] = MOUTH
    return out


def parse_from_lm68(lm68: Tensor, size: int) -> Tensor:
    """``(..., 68, 2)`` pixel landmarks -> ``(..., size, size)`` long parse labels."""
    flat = lm68.detach().reshape(-1, 68, 2).cpu().numpy()
    maps = np.stack([parse_from_lm68_np(p, size) for p in flat]) if len(flat) else np.zeros((0, size, size), np.int64)
    return torch.from_numpy(maps).reshape(*lm68.shape[:-2], size, size).to(lm68.device)


def one_hot_parse(parse: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """``(..., H, W)`` labels -> ``(..., K, H, W)`` float one-hot."""
    oh = torch.nn.functional.one_hot(parse.long().clamp(0, num_classes - 1), num_classes).to(torch.float32)
    return oh.movedim(-1, -3)


__all__ = ["NUM_CLASSES", "one_hot_parse", "parse_from_lm68", "parse_from_lm68_np"]
