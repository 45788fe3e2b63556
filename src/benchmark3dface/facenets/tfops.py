"""TensorFlow semantics in PyTorch for the converted networks (NCHW tensors).

- ``"SAME"`` padding is asymmetric (see :func:`.tfjs.same_padding`): at stride 2 on an even
  size a 3x3 kernel pads 0 before and 1 after, which ``nn.Conv2d(padding=1)`` gets wrong by one
  pixel. :class:`SameConv2d` pads explicitly with zeros before an unpadded convolution.
- TF max pooling with ``"SAME"`` pads with -inf (never selected).
- Weight layouts: TF conv filters are HWIO, depthwise filters ``[kh, kw, C, multiplier]``,
  dense weights ``(in, out)``; :func:`hwio_to_oihw`, :func:`depthwise_to_torch` and
  :func:`dense_to_torch` convert them to PyTorch's layouts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tfjs import same_padding


def pad_same(x: Tensor, kernel: int, stride: int, value: float = 0.0) -> Tensor:
    """Pad ``(B, C, H, W)`` like TF ``"SAME"`` for a square ``kernel`` at ``stride``."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TF padding: ``"same"`` (asymmetric, zeros) or ``"valid"``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = True, tf_padding: str = "same") -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)
        if tf_padding not in ("same", "valid"):
            raise ValueError(f"tf_padding must be 'same' or 'valid', got {tf_padding!r}")
        self.tf_padding = tf_padding

    def forward(self, x: Tensor) -> Tensor:
        if self.tf_padding == "same":
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


def max_pool_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """TF max pooling with ``"SAME"`` padding (padded samples never win)."""
    return F.max_pool2d(pad_same(x, kernel, stride, value=float("-inf")), kernel, stride)


def pad_channels(x: Tensor, channels: int) -> Tensor:
    """Zero channels appended up to ``channels`` (BlazeFace's ``channel_padding``)."""
    extra = channels - x.shape[1]
    return x if extra == 0 else F.pad(x, (0, 0, 0, 0, 0, extra))


def hwio_to_oihw(w: np.ndarray) -> Tensor:
    """TF conv filter ``[kh, kw, in, out]`` -> torch ``(out, in, kh, kw)`` float32."""
    if w.ndim != 4:
        raise ValueError(f"expected a 4-D HWIO filter, got shape {w.shape}")
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).float()


def depthwise_to_torch(w: np.ndarray) -> Tensor:
    """TF depthwise filter ``[kh, kw, C, 1]`` -> torch grouped-conv weight ``(C, 1, kh, kw)``."""
    if w.ndim != 4 or w.shape[3] != 1:
        raise ValueError(f"expected a [kh, kw, C, 1] depthwise filter, got shape {w.shape}")
    return torch.from_numpy(np.ascontiguousarray(w.transpose(2, 3, 0, 1))).float()


def dense_to_torch(w: np.ndarray) -> Tensor:
    """TF dense weights ``(in, out)`` -> ``nn.Linear`` weight ``(out, in)``."""
    if w.ndim != 2:
        raise ValueError(f"expected 2-D dense weights, got shape {w.shape}")
    return torch.from_numpy(np.ascontiguousarray(w.T)).float()


def vector(w: np.ndarray) -> Tensor:
    """Any array -> flat float32 tensor (biases, PReLU slopes ``[1, 1, C]``)."""
    return torch.from_numpy(np.ascontiguousarray(w.reshape(-1))).float()
