"""Face-recognition terms of Gao et al. (Eq. 4): softmax cross-entropy on identity logits plus
the center loss of Wen et al. (ECCV 2016) with learnable per-class centres.

Identity labels are long ``(B,)``; a negative label marks a sample without an identity label
(ignored by both terms), so semi-supervised batches need no special casing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_shape, zero_loss

IGNORE_LABEL = -1


class CenterLoss(nn.Module):
    """Center loss ``1/2 mean_i ||x_i - c_{y_i}||^2`` with learnable centres ``(num_classes, dim)``.

    The centres are an ``nn.Parameter`` trained by the same optimiser as the features (their
    gradient ``c_y - x_i`` reproduces Wen et al.'s centre update up to the step size).  The
    batch mean (instead of Wen's batch sum) keeps the scale independent of the batch size.
    Samples with a negative label are ignored.
    """

    def __init__(self, num_classes: int, feat_dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        if num_classes <= 0 or feat_dim <= 0:
            raise ValueError(f"num_classes and feat_dim must be positive, got {num_classes}, {feat_dim}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim) * init_std)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Args: features ``(B, dim)`` (e.g. the identity code), labels ``(B,)`` long.
        Returns a scalar (squared feature units); 0 when no sample is labelled."""
        check_shape("features", features, (None, self.feat_dim))
        check_shape("labels", labels, (features.shape[0],))
        valid = labels >= 0
        idx = labels.clamp_min(0).long()
        c = self.centers.to(features.dtype)[idx]
        d2 = 0.5 * ((features - c) ** 2).sum(-1)
        w = valid.to(features.dtype)
        return (d2 * w).sum() / w.sum().clamp_min(1.0) + zero_loss(d2)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"


def softmax_recognition_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy ``L_soft`` over identity classes (nats); negative labels ignored,
    0 when none is labelled."""
    check_shape("logits", logits, (None, None))
    check_shape("labels", labels, (logits.shape[0],))
    valid = labels >= 0
    per = F.cross_entropy(logits, labels.clamp_min(0).long(), reduction="none")
    w = valid.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1.0) + zero_loss(per)


def recognition_loss(logits: Tensor, labels: Tensor, features: Tensor | None = None,
                     center_loss: CenterLoss | None = None,
                     center_weight: float | None = None) -> Tensor:
    """Gao et al. Eq. 4: ``L_recog = L_soft + lambda_center * L_center``.

    Args:
        logits: ``(B, num_classes)`` identity logits (a classifier on the identity code).
        labels: ``(B,)`` long identity labels (negative = unlabelled).
        features, center_loss, center_weight: the identity code ``(B, dim)``, the
            ``CenterLoss`` module and ``lambda_center``; all three or none.
    """
    loss = softmax_recognition_loss(logits, labels)
    if center_loss is None and features is None:
        return loss
    if center_loss is None or features is None or center_weight is None:
        raise ValueError("recognition_loss: pass features, center_loss and center_weight together")
    return loss + center_weight * center_loss(features, labels)
