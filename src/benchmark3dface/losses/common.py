"""Small helpers shared by the loss terms: masked reductions, robust norms, input checks.

Every loss in this package is a pure function of batched tensors that returns a scalar
tensor (or a per-sample tensor when asked) and stays differentiable.  Shape problems raise a
``ValueError`` naming the argument; NaN checks are left to the caller (a check would force a
device synchronisation on every step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: Added under square roots so that ``sqrt(x + eps)`` has a finite gradient at ``x = 0``.
NORM_EPS = 1e-6


def check_shape(name: str, x: Tensor, shape: Sequence[int | None]) -> None:
    """Raise ``ValueError`` unless ``x`` has ``len(shape)`` dims and matches every non-None size."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have identical shapes."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape")


def as_image_mask(mask: Tensor | None, image: Tensor, name: str = "mask") -> Tensor:
    """Bring a per-pixel mask/weight map to ``(B, 1, H, W)`` in the image's dtype.

    Accepts ``(B, H, W)``, ``(B, 1, H, W)`` or ``None`` (all ones) for an image ``(B, C, H, W)``;
    bool masks become 0/1 floats, float maps are kept as weights.
    """
    b, _, h, w = image.shape
    if mask is None:
        return image.new_ones(b, 1, h, w)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != b or mask.shape[-2:] != (h, w):
        raise ValueError(f"{name}: expected shape ({b}, H, W) or ({b}, 1, H, W) with H, W = {h}, {w}, "
                         f"got {tuple(mask.shape)}")
    return mask.to(image.dtype)


def masked_mean(x: Tensor, mask: Tensor | None = None, dim: int | Sequence[int] | None = None,
                keepdim: bool = False, eps: float = 1e-12) -> Tensor:
    """Weighted mean ``sum(mask * x) / sum(mask)`` over ``dim`` (all dims when None).

    ``mask`` broadcasts against ``x`` (bool or float weights).  Where the mask sums to 0 the
    result is 0 (not NaN), and its gradient is 0.
    """
    if mask is None:
        return x.mean() if dim is None else x.mean(dim=dim, keepdim=keepdim)
    m = mask.to(x.dtype).expand_as(x)
    if dim is None:
        return (x * m).sum() / m.sum().clamp_min(eps)
    return (x * m).sum(dim=dim, keepdim=keepdim) / m.sum(dim=dim, keepdim=keepdim).clamp_min(eps)


def safe_norm(x: Tensor, dim: int = -1, keepdim: bool = False, eps: float = NORM_EPS) -> Tensor:
    """Euclidean norm ``sqrt(sum x^2 + eps)``: differentiable at 0 (biased by at most sqrt(eps))."""
    return torch.sqrt((x * x).sum(dim=dim, keepdim=keepdim) + eps)


def charbonnier(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier penalty ``sqrt(x^2 + eps^2) - eps`` elementwise: ~|x| for |x| >> eps, 0 at 0."""
    return torch.sqrt(x * x + eps * eps) - eps


def zero_loss(like: Tensor) -> Tensor:
    """A scalar 0 on ``like``'s device/dtype that keeps ``like`` in the autograd graph."""
    return like.sum() * 0.0
