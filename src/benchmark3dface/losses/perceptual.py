"""Perceptual (face-recognition feature) terms.

Features come from a frozen face-recognition network owned by the method (FaceNet in
Deng'19, ArcFace in Deng's PyTorch code); these functions only compare feature batches.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .common import check_same_shape, check_shape


def identity_perceptual_loss(feat_rendered: Tensor, feat_image: Tensor, eps: float = 1e-8) -> Tensor:
    """Deng'19 perceptual loss (Eq. 7): ``mean_b (1 - cos(f(I'_b), f(I_b)))``.

    Args:
        feat_rendered, feat_image: ``(B, D)`` feature vectors (any scale; normalised here).
    Returns:
        Scalar in [0, 2]: 0 for parallel features, 1 orthogonal, 2 opposite.
    """
    check_shape("feat_rendered", feat_rendered, (None, None))
    check_same_shape("feat_rendered", feat_rendered, "feat_image", feat_image)
    return (1.0 - F.cosine_similarity(feat_rendered, feat_image, dim=-1, eps=eps)).mean()


def feature_l2_loss(feat_rendered: Tensor, feat_image: Tensor, normalize: bool = False) -> Tensor:
    """WM3DR perception-level loss (Eq. 11): ``mean_k ||phi(I_k) - phi(I*_k)||_2^2`` over faces.

    Args:
        feat_rendered, feat_image: ``(B, D)`` features of the per-face crops.
        normalize: L2-normalise the features first (then the value is ``2 - 2 cos``).
    Returns:
        Scalar in squared feature units.
    """
    check_shape("feat_rendered", feat_rendered, (None, None))
    check_same_shape("feat_rendered", feat_rendered, "feat_image", feat_image)
    if normalize:
        feat_rendered = F.normalize(feat_rendered, dim=-1)
        feat_image = F.normalize(feat_image, dim=-1)
    return ((feat_rendered - feat_image) ** 2).sum(-1).mean()
