"""Face-parse terms of DF-MVR (Zhao et al.): the parse-derived photometric weight map and the
mask (parse) cross-entropy between a rendered label map and the input parse.

Parse ids follow docs/conventions.md / ``benchmark3dface.facemodel.regions.PARSE_CLASSES``:
0 background, 1 skin, 2-9 facial features (brows, eyes, nose, lips, inner mouth).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import as_image_mask, check_shape

#: Parse ids of the "facial features" level of DF-MVR's weight map (brows .. inner mouth).
FACIAL_FEATURE_CLASSES: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 9)
#: DF-MVR paper levels (facial features, rest of the face, background) = 254, 128, 32 of 255.
DFMVR_PAPER_LEVELS: tuple[float, float, float] = (254 / 255, 128 / 255, 32 / 255)
#: Levels in the official DF-MVR code.
DFMVR_CODE_LEVELS: tuple[float, float, float] = (0.99, 0.5, 0.25)
#: Dilation of the facial features in pixels: paper "20 pixel"; the code dilates with a 10x10
#: kernel (about 5 px each way).
DFMVR_PAPER_DILATION_PX = 20
DFMVR_CODE_DILATION_PX = 5


def dilate_mask(mask: Tensor, radius_px: int) -> Tensor:
    """Binary dilation of ``(B, H, W)`` masks by ``radius_px`` pixels (square structuring element,
    side ``2 r + 1``) via max-pooling.  Returns bool ``(B, H, W)``."""
    if radius_px <= 0:
        return mask.bool()
    k = 2 * int(radius_px) + 1
    out = F.max_pool2d(mask.float().unsqueeze(1), kernel_size=k, stride=1, padding=int(radius_px))
    return out[:, 0] > 0


def dfmvr_weight_map(parse: Tensor, dilation_px: int = DFMVR_PAPER_DILATION_PX,
                     levels: Sequence[float] = DFMVR_PAPER_LEVELS,
                     feature_classes: Sequence[int] = FACIAL_FEATURE_CLASSES) -> Tensor:
    """DF-MVR photometric weight map (paper Sec. III-A, Fig. 4) from an input parse.

    The facial-feature region (``feature_classes``) is dilated by ``dilation_px`` pixels and
    kept inside the face (non-background) region, as in the official code; pixels get
    ``levels = (features, rest of the face, background)``.  Only ratios matter because the
    photometric loss divides by the sum of weights.

    Args:
        parse: ``(B, H, W)`` integer parse labels.
    Returns:
        ``(B, H, W)`` float weights; multiply by the rendered coverage mask and pass to
        ``photometric_loss``.
    """
    check_shape("parse", parse, (None, None, None))
    if len(levels) != 3:
        raise ValueError(f"levels must be (features, face, background), got {levels!r}")
    feat_w, face_w, bg_w = (float(v) for v in levels)
    face = parse != 0
    feat = torch.isin(parse, torch.as_tensor(list(feature_classes), device=parse.device))
    feat_d = dilate_mask(feat, dilation_px) & face
    out = torch.full(parse.shape, bg_w, device=parse.device)
    out = torch.where(face, torch.full_like(out, face_w), out)
    return torch.where(feat_d, torch.full_like(out, feat_w), out)


def parse_cross_entropy(pred: Tensor, target: Tensor, mask: Tensor | None = None,
                        inputs: Literal["logits", "probs"] = "logits",
                        mode: Literal["ce", "bce"] = "ce", eps: float = 1e-6) -> Tensor:
    """DF-MVR mask loss (Eq. 3): cross-entropy between a predicted label map of the rendered
    face and the input parse labels, averaged over the pixels of ``mask``.

    Args:
        pred: ``(B, K, H, W)`` class scores for the rendered image: ``"logits"`` (e.g. a parse
            network applied to the rendering, as in the official code) or ``"probs"`` (a soft
            label map rendered from per-vertex one-hot labels; channels should sum to 1, e.g.
            background = 1 - coverage).
        target: ``(B, H, W)`` long labels in ``[0, K)``.
        mask: ``(B, H, W)`` / ``(B, 1, H, W)`` pixels to average over (the paper's "face mask"
            pixels); None = all pixels (official code).
        mode: ``"ce"`` softmax cross-entropy ``-log p_y``; ``"bce"`` the paper's binary form
            ``-(y log p + (1-y) log(1-p))`` on one-hot labels, summed over classes (sigmoid of
            the logits for ``inputs="logits"``).
    Returns:
        Scalar, nats per pixel.
    """
    check_shape("pred", pred, (None, None, None, None))
    b, k, h, w = pred.shape
    check_shape("target", target, (b, h, w))
    m = as_image_mask(mask, pred)[:, 0]
    tgt = target.long()
    if mode == "ce":
        if inputs == "logits":
            logp = F.log_softmax(pred, dim=1)
        elif inputs == "probs":
            logp = torch.log(pred.clamp_min(eps))
        else:
            raise ValueError(f"inputs must be 'logits' or 'probs', got {inputs!r}")
        per_px = -logp.gather(1, tgt.unsqueeze(1))[:, 0]
    elif mode == "bce":
        onehot = F.one_hot(tgt, k).permute(0, 3, 1, 2).to(pred.dtype)
        if inputs == "logits":
            per_px = F.binary_cross_entropy_with_logits(pred, onehot, reduction="none").sum(1)
        elif inputs == "probs":
            p = pred.clamp(eps, 1 - eps)
            per_px = -(onehot * torch.log(p) + (1 - onehot) * torch.log1p(-p)).sum(1)
        else:
            raise ValueError(f"inputs must be 'logits' or 'probs', got {inputs!r}")
    else:
        raise ValueError(f"mode must be 'ce' or 'bce', got {mode!r}")
    return (per_px * m).sum() / m.sum().clamp_min(1e-12)
