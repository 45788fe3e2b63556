"""Centre-heatmap detection terms of WM3DR (Zhang et al., Eq. 7-8): a CenterNet-style
focal loss and Gaussian target heatmaps.

Heatmaps are ``(B, 1, H, W)`` on the output grid (stride r of the input image).  Centres are
continuous heatmap-pixel coordinates ``(u, v)`` with the top-left-corner origin of
docs/conventions.md (an image-pixel centre ``(u, v)`` maps to ``(u / r, v / r)``); the peak goes
to the cell containing the centre, ``(floor(v), floor(u))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import check_same_shape, check_shape


def focal_heatmap_loss(pred: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0,
                       logits: bool = False, eps: float = 1e-6) -> Tensor:
    """Penalty-reduced pixel-wise focal loss (CenterNet; WM3DR Eq. 7 with gamma = alpha = 2):

    ``-1/N [ sum_{y=1} (1 - p)^alpha log p + sum_{y<1} (1 - y)^beta p^alpha log(1 - p) ]``

    with N the number of peaks (faces) in the batch.  ``beta = 0`` with binary targets gives
    WM3DR's plain focal loss.

    Args:
        pred: ``(B, 1, H, W)`` probabilities, or logits when ``logits=True`` (numerically safer;
            WM3DR's head has bias -4.59, i.e. sigmoid 0.01).
        target: same shape, in [0, 1], exactly 1 at the peaks (``draw_gaussian_heatmap``).
    Returns:
        Scalar (nats per face); with no peak the negatives' sum is returned.
    """
    check_same_shape("pred", pred, "target", target)
    pos = (target >= 1.0).to(pred.dtype)
    neg = 1.0 - pos
    if logits:
        log_p, log_1mp, p = F.logsigmoid(pred), F.logsigmoid(-pred), torch.sigmoid(pred)
    else:
        p = pred.clamp(eps, 1 - eps)
        log_p, log_1mp = torch.log(p), torch.log1p(-p)
    pos_term = ((1 - p) ** alpha) * log_p * pos
    neg_term = ((1 - target) ** beta) * (p ** alpha) * log_1mp * neg
    return -(pos_term.sum() + neg_term.sum()) / pos.sum().clamp_min(1.0)


def draw_gaussian_heatmap(centers: Tensor, radii: Tensor, batch_index: Tensor, batch_size: int,
                          height: int, width: int, sigma: Tensor | None = None) -> Tensor:
    """Gaussian target heatmap (CenterNet): for each face a Gaussian
    ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` over integer cell offsets from its peak cell,
    truncated to ``|dx|, |dy| <= radius``; overlaps take the maximum.  Vectorised over faces.

    Args:
        centers: ``(K, 2)`` face centres ``(u, v)`` in heatmap pixels.
        radii: ``(K,)`` radii in cells (e.g. from the face size on the heatmap).
        batch_index: ``(K,)`` long image index of each face in ``[0, batch_size)``.
        sigma: ``(K,)``; default ``(2 r + 1) / 6`` (CenterNet).
    Returns:
        ``(B, 1, H, W)`` float heatmap in [0, 1], exactly 1 at each face's peak cell.
    """
    check_shape("centers", centers, (None, 2))
    kf = centers.shape[0]
    check_shape("radii", radii, (kf,))
    check_shape("batch_index", batch_index, (kf,))
    dtype = centers.dtype if centers.is_floating_point() else torch.float32
    heat = torch.zeros(batch_size, height, width, dtype=dtype, device=centers.device)
    if kf == 0:
        return heat[:, None]
    r = radii.to(dtype)
    s = (2 * r + 1) / 6 if sigma is None else sigma.to(dtype)
    cj = centers[:, 0].floor().clamp(0, width - 1)
    ci = centers[:, 1].floor().clamp(0, height - 1)
    ys = torch.arange(height, dtype=dtype, device=centers.device)
    xs = torch.arange(width, dtype=dtype, device=centers.device)
    dy = ys[None, :] - ci[:, None]  # (K, H)
    dx = xs[None, :] - cj[:, None]  # (K, W)
    g = torch.exp(-(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / (2 * s[:, None, None] ** 2))
    inside = (dy.abs() <= r[:, None])[:, :, None] & (dx.abs() <= r[:, None])[:, None, :]
    g = torch.where(inside, g, torch.zeros_like(g))
    index = batch_index.long().view(-1, 1, 1).expand(-1, height, width)
    heat = heat.scatter_reduce(0, index, g, reduce="amax", include_self=True)
    return heat[:, None]
