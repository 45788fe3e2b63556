"""Landmark terms: Deng's weighted 2D landmark loss (also DF-MVR, WM3DR), Gao's landmark
gradient-difference loss, and DF-MVR's 3D landmark loss after a 7-point similarity alignment.

Landmarks are ``(B, K, 2)`` in image pixels (docs/conventions.md: top-left origin, u right,
v down) or ``(B, K, 3)`` in millimetres; the 68 points follow iBUG-68 0-based semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from benchmark3dface.geometry.mesh import umeyama

from .common import check_same_shape, check_shape

#: Under the square root of point distances (px or mm): bias <= 1e-6, finite gradient at 0.
_DIST_EPS = 1e-12

#: Deng'19 (official code): weight 20 on the nose (28-30) and inner-mouth (60-67) points.
DENG_HIGH_WEIGHT_INDICES: tuple[int, ...] = (28, 29, 30, 60, 61, 62, 63, 64, 65, 66, 67)
#: The official DF-MVR code also weights the eyes (36-47) by 20.
DFMVR_CODE_HIGH_WEIGHT_INDICES: tuple[int, ...] = DENG_HIGH_WEIGHT_INDICES + tuple(range(36, 48))
#: DF-MVR code: the 7 alignment points in its 101-point 3D landmark set.
DFMVR_LM101_ALIGN_INDICES: tuple[int, ...] = (47, 50, 53, 56, 41, 79, 85)


def landmark_weights(num_points: int = 68, high_weight: float = 20.0,
                     high_indices: Sequence[int] = DENG_HIGH_WEIGHT_INDICES,
                     dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Per-landmark weights ``(num_points,)``: ``high_weight`` at ``high_indices``, 1 elsewhere."""
    w = torch.ones(num_points, dtype=dtype, device=device)
    idx = list(high_indices)
    if idx and (min(idx) < 0 or max(idx) >= num_points):
        raise ValueError(f"high_indices must lie in [0, {num_points}), got {idx}")
    w[idx] = high_weight
    return w


def landmark_loss(pred: Tensor, target: Tensor, weights: Tensor | None = None,
                  visible: Tensor | None = None, squared: bool = True,
                  reduction: Literal["mean", "sum"] = "mean") -> Tensor:
    """Weighted landmark reprojection loss.

    ``mean_n w_n * ||q_n - q'_n||^2`` (Deng'19 Eq. 6, official code: mean over batch x points,
    not normalised by the weights); ``squared=False`` gives DF-MVR Eq. 4 (``||.||_2``);
    ``reduction="sum"`` sums over points and averages over faces (WM3DR Eq. 12).

    Args:
        pred, target: ``(B, K, D)`` landmarks (pixels for D=2).
        weights: ``(K,)`` or ``(B, K)`` per-point weights (``landmark_weights()``); None = 1.
        visible: ``(B, K)`` bool/float mask; hidden points are dropped and the mean runs over
            the visible ones.
    Returns:
        Scalar in px^2 (``squared``) or px.
    """
    check_shape("pred", pred, (None, None, None))
    check_same_shape("pred", pred, "target", target)
    b, k, _ = pred.shape
    d2 = ((pred - target) ** 2).sum(-1)
    per = d2 if squared else torch.sqrt(d2 + _DIST_EPS)
    w = pred.new_ones(b, k)
    if weights is not None:
        if weights.shape not in ((k,), (b, k)):
            raise ValueError(f"weights: expected shape ({k},) or ({b}, {k}), got {tuple(weights.shape)}")
        w = w * weights.to(pred.dtype)
    count = pred.new_tensor(float(b * k))
    if visible is not None:
        check_shape("visible", visible, (b, k))
        vis = visible.to(pred.dtype)
        w = w * vis
        count = vis.sum().clamp_min(1.0)
    total = (w * per).sum()
    if reduction == "mean":
        return total / count
    if reduction == "sum":
        return total / b
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _chain(points: Sequence[int], closed: bool = False) -> list[tuple[int, int]]:
    pairs = list(zip(points[:-1], points[1:]))
    if closed:
        pairs.append((points[-1], points[0]))
    return pairs


#: Consecutive points along the 68-point contours (jaw, brows, nose bridge and base, closed
#: eye and lip loops).
CONTOUR_PAIRS_68: tuple[tuple[int, int], ...] = tuple(
    _chain(list(range(0, 17))) + _chain(list(range(17, 22))) + _chain(list(range(22, 27)))
    + _chain(list(range(27, 31))) + _chain(list(range(31, 36)))
    + _chain(list(range(36, 42)), True) + _chain(list(range(42, 48)), True)
    + _chain(list(range(48, 60)), True) + _chain(list(range(60, 68)), True))
#: Upper-to-lower eyelid and lip pairs (eye and mouth opening, stressed by Gao et al.).
OPENING_PAIRS_68: tuple[tuple[int, int], ...] = (
    (37, 41), (38, 40), (43, 47), (44, 46), (61, 67), (62, 66), (63, 65), (50, 58), (51, 57), (52, 56))
GDL_PAIRS_68: tuple[tuple[int, int], ...] = CONTOUR_PAIRS_68 + OPENING_PAIRS_68


def landmark_gdl_loss(pred: Tensor, target: Tensor,
                      pairs: Sequence[tuple[int, int]] = GDL_PAIRS_68,
                      visible: Tensor | None = None) -> Tensor:
    """Landmark gradient-difference loss (Gao et al. Eq. 6, ``L_gdl,lmk``).

    For each pair (i, j) the offset ``q_i - q_j`` of the prediction should equal the target's:
    ``mean_pairs || (q_i - q_j) - (q'_i - q'_j) ||^2``.  Translation-invariant, so it constrains
    shape (eye and mouth opening) rather than position.

    Args:
        pred, target: ``(B, K, D)`` landmarks (pixels).
        pairs: index pairs; default ``GDL_PAIRS_68`` (contour neighbours + opening pairs).
        visible: optional ``(B, K)`` mask; a pair counts only if both points are visible.
    Returns:
        Scalar, px^2.
    """
    check_shape("pred", pred, (None, None, None))
    check_same_shape("pred", pred, "target", target)
    flat = [int(i) for pair in pairs for i in pair]
    if not flat:
        raise ValueError("pairs must not be empty")
    if max(flat) >= pred.shape[1] or min(flat) < 0:
        raise ValueError(f"pairs reference landmark indices outside [0, {pred.shape[1]})")
    idx = torch.as_tensor(flat, dtype=torch.long, device=pred.device).view(-1, 2)
    dp = pred[:, idx[:, 0]] - pred[:, idx[:, 1]]
    dt = target[:, idx[:, 0]] - target[:, idx[:, 1]]
    per = ((dp - dt) ** 2).sum(-1)  # (B, P)
    if visible is None:
        return per.mean()
    v = visible.to(pred.dtype)
    m = v[:, idx[:, 0]] * v[:, idx[:, 1]]
    return (per * m).sum() / m.sum().clamp_min(1.0)


def similarity_align(src: Tensor, dst: Tensor, align_indices: Sequence[int] | None = None,
                     detach: bool = False) -> Tensor:
    """Map ``src`` onto ``dst`` with the least-squares similarity (Umeyama) fitted on
    ``align_indices`` (all points when None).  ``(B, K, 3)`` -> ``(B, K, 3)``, units of ``dst``.

    ``detach=True`` stops gradients through the fitted ``s, R, t`` (they still flow through
    the transformed points)."""
    sel = slice(None) if align_indices is None else list(align_indices)
    s, r, t = umeyama(src[:, sel], dst[:, sel])
    if detach:
        s, r, t = s.detach(), r.detach(), t.detach()
    return s[:, None, None] * src @ r.transpose(-1, -2) + t[:, None, :]


def aligned_landmark3d_loss(pred: Tensor, target: Tensor,
                            align_indices: Sequence[int] | None = DFMVR_LM101_ALIGN_INDICES,
                            detach_alignment: bool = False) -> Tensor:
    """DF-MVR 3D landmark loss (Eqs. 5-6): align the predicted landmarks to the targets with a
    similarity fitted on the alignment points, then ``mean_n ||q_nt - q'_n||_2``.

    Args:
        pred: ``(B, K, 3)`` predicted 3D landmarks (model or camera frame, mm).
        target: ``(B, K, 3)`` ground-truth 3D landmarks (mm, any frame).
        align_indices: the points that fit the similarity (DF-MVR: 7 of its 101 points,
            ``DFMVR_LM101_ALIGN_INDICES``); None = all points.
        detach_alignment: stop gradients through ``s, R, t`` (the official code keeps them).
    Returns:
        Scalar, mean point distance in mm.
    """
    check_shape("pred", pred, (None, None, 3))
    check_same_shape("pred", pred, "target", target)
    if align_indices is not None and max(align_indices) >= pred.shape[1]:
        raise ValueError(f"align_indices {tuple(align_indices)} exceed the {pred.shape[1]} landmarks")
    aligned = similarity_align(pred, target, align_indices, detach_alignment)
    return torch.sqrt(((aligned - target) ** 2).sum(-1) + _DIST_EPS).mean()
