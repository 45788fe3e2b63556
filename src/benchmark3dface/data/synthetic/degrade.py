"""Image degradations: Gaussian blur, additive noise, 8-bit quantisation and JPEG artefacts.

Blur is a separable convolution written as a fixed-order sum of shifted copies (element-wise
ops only), so its result does not depend on torch's thread count.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Blur ``(C, H, W)`` with a Gaussian of ``sigma`` px (replicate border)."""
    if sigma <= 0:
        return img
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    h, w = img.shape[-2:]
    x = F.pad(img[None], (r, r, 0, 0), mode="replicate")[0]
    out = x[..., 0:w] * float(k[0])
    for i in range(1, 2 * r + 1):
        out = out + x[..., i:i + w] * float(k[i])
    x = F.pad(out[None], (0, 0, r, r), mode="replicate")[0]
    out = x[..., 0:h, :] * float(k[0])
    for i in range(1, 2 * r + 1):
        out = out + x[..., i:i + h, :] * float(k[i])
    return out


def add_noise(img: Tensor, rng: np.random.Generator, std: float) -> Tensor:
    """``img + N(0, std^2)`` per pixel and channel (numpy's generator, float32)."""
    if std <= 0:
        return img
    n = rng.standard_normal(tuple(img.shape), dtype=np.float32)
    return img + torch.from_numpy(n) * std


def to_grayscale(img: Tensor) -> Tensor:
    """ITU-R 601 luminance replicated to 3 channels, ``(3, H, W) -> (3, H, W)``."""
    y = img[0] * 0.299 + img[1] * 0.587 + img[2] * 0.114
    return y[None].expand(3, -1, -1).clone()


def quantize(img: Tensor) -> Tensor:
    """float [0, 1] ``(3, H, W)`` -> uint8 (round half to even)."""
    return (img.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def jpeg(u8: Tensor, quality: int) -> Tensor:
    """Re-encode a uint8 ``(3, H, W)`` image as JPEG (Pillow/libjpeg) and decode it."""
    arr = np.ascontiguousarray(u8.permute(1, 2, 0).numpy())
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).contiguous()


def u8_to_float(u8: Tensor) -> Tensor:
    """uint8 -> float32 in [0, 1] (``x / 255``); the one conversion used everywhere so that
    images written to PNG shards read back bit-identical."""
    return u8.float() / 255.0
