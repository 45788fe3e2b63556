"""Per-vertex parse regions derived from the 68 landmarks, for any topology.

Region ids follow docs/conventions.md: 0 background (pixels only), 1 skin, 2 left brow,
3 right brow, 4 left eye, 5 right eye, 6 nose, 7 upper lip, 8 lower lip, 9 inner mouth
(left/right = viewer's left/right).
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path

PARSE_CLASSES = ("background", "skin", "left_brow", "right_brow", "left_eye", "right_eye",
                 "nose", "upper_lip", "lower_lip", "inner_mouth")
SKIN, L_BROW, R_BROW, L_EYE, R_EYE, NOSE, U_LIP, L_LIP, MOUTH = range(1, 10)


def _inside(points2d: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    return Path(polygon).contains_points(points2d)


def _near_polyline(points2d: np.ndarray, line: np.ndarray, radius: float) -> np.ndarray:
    d = np.full(points2d.shape[0], np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((points2d - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
        d = np.minimum(d, np.linalg.norm(points2d - (a + t[:, None] * ab), axis=1))
    return d < radius


def paint_landmark_regions(labels: np.ndarray, points2d: np.ndarray, lm: np.ndarray,
                           keep: np.ndarray | None = None) -> np.ndarray:
    """Paints the regions bounded by 68 landmark positions over ``labels`` (in place, and
    returned), in this order: brows (a band around each brow line), eyes (the eye polygons
    widened by 15 %), nose (bridge top to the alae, widened toward the inner eye corners), upper
    and lower lip, inner mouth. ``points2d`` (N, 2) and ``lm`` (68, 2) share one 2D frame (model
    x/y or image pixels: only distances and containment are used); ``keep`` (N,) bool limits the
    painting to those points. Used for the model's vertices (:func:`regions_from_landmarks`) and
    for parse maps drawn from image landmarks (methods that take a parse input)."""
    lm = np.asarray(lm, dtype=np.float64)
    keep = np.ones(len(points2d), dtype=bool) if keep is None else keep
    eye_dist = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))

    brow_r = 0.09 * eye_dist
    labels[_near_polyline(points2d, lm[17:22], brow_r) & keep] = L_BROW
    labels[_near_polyline(points2d, lm[22:27], brow_r) & keep] = R_BROW

    def widen(poly: np.ndarray, factor: float) -> np.ndarray:
        c = poly.mean(0)
        return c + (poly - c) * factor

    labels[_inside(points2d, widen(lm[36:42], 1.15)) & keep] = L_EYE
    labels[_inside(points2d, widen(lm[42:48], 1.15)) & keep] = R_EYE

    # nose: bridge top (27) down to the alae (31..35), widened sideways toward the inner eye corners
    ala_l, ala_r = lm[31] + (lm[31] - lm[33]) * 0.45, lm[35] + (lm[35] - lm[33]) * 0.45
    side_l = np.array([lm[39, 0] * 0.35 + lm[27, 0] * 0.65, (lm[27, 1] + lm[31, 1]) / 2])
    side_r = np.array([lm[42, 0] * 0.35 + lm[27, 0] * 0.65, (lm[27, 1] + lm[35, 1]) / 2])
    nose_poly = np.stack([lm[27], side_r, ala_r, lm[34], lm[33], lm[32], ala_l, side_l])
    labels[_inside(points2d, nose_poly) & keep] = NOSE

    upper = np.concatenate([lm[48:55], lm[[64, 63, 62, 61, 60]]])
    lower = np.concatenate([lm[[54, 55, 56, 57, 58, 59, 48]], lm[[60, 67, 66, 65, 64]]])
    labels[_inside(points2d, upper) & keep] = U_LIP
    labels[_inside(points2d, lower) & keep] = L_LIP
    labels[_inside(points2d, lm[60:68]) & keep] = MOUTH
    return labels


def regions_from_landmarks(mean_shape: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """Label each vertex by its frontal (x, y) position relative to landmark contours.

    Args:
        mean_shape: (N, 3) model-frame mean face (x right, y up, z to the camera).
        landmarks68: (68,) vertex indices, iBUG semantics.
    Returns:
        (N,) int64 region ids in 1..9.
    """
    xy = mean_shape[:, :2].astype(np.float64)
    front = mean_shape[:, 2] > np.percentile(mean_shape[:, 2], 2)  # exclude far back-facing rims
    lab = np.full(len(xy), SKIN, dtype=np.int64)
    return paint_landmark_regions(lab, xy, xy[landmarks68], keep=front)


def skin_vertices(regions: np.ndarray) -> np.ndarray:
    """(N,) bool: vertices used by skin/texture regularisers (skin and nose)."""
    return np.isin(regions, (SKIN, NOSE))
