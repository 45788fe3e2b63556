"""The face-parse input channel of DF-MVR at test time, from the 68 input landmarks.

DF-MVR concatenates a face-parse label map (one-hot, 10 classes) to each view's RGB. The paper
gets it from a BiSeNet trained on CelebAMask-HQ; the benchmark's test-time inputs are the image
and the landmarks of the run's landmark source (never the dataset's parse annotations), so this
method draws the parse from the 68 landmarks with the polygons the face model's vertices are
labelled with (``facemodel.regions.paint_landmark_regions``; brows: a band around the brow
line; eyes: the widened eye polygons; nose: bridge to alae; lips and inner mouth: the lip
contours), the face region being the jaw line closed over the raised brows. The same function
feeds training (landmarks of the training samples), so training and test inputs match.
The exact synthetic parse labels are used only as *loss targets* (weight map, mask loss).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.path import Path
from torch import Tensor

from benchmark3dface.facemodel.regions import SKIN, paint_landmark_regions

NUM_CLASSES = 10


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
    # face: jaw line closed over the brows raised by half the brow-to-nose-tip distance
    up = (lm[17:27].mean(0) - lm[30]) * 0.5
    face = np.concatenate([lm[0:17], (lm[17:27] + up)[::-1]])
    lab[Path(face).contains_points(pts)] = SKIN
    paint_landmark_regions(lab, pts, lm)  # the regions the face model's vertices are labelled with
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
