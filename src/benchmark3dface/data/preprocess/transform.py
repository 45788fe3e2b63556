"""Scale + translation image transforms (no rotation), the geometry of every crop and resize.

A :class:`ScaleTranslation` maps source pixels ``p`` to destination pixels ``q``:
``q = scale * p + offset``. Both in the framework's continuous image convention
(docs/conventions.md: top-left origin, pixel centres at +0.5), so the same transform applies to
landmarks, to box corners and to the warp of the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class ScaleTranslation:
    """``q = scale * p + offset`` in pixels (source -> destination).

    ``scale`` is unitless (destination pixels per source pixel); ``offset`` = (ox, oy) in
    destination pixels. Picklable, so it can travel in ``Sample.meta``.
    """

    scale: float
    offset: tuple[float, float]

    def apply(self, points):
        """Map ``(..., 2)`` source points (Tensor or ndarray) to the destination image."""
        if isinstance(points, Tensor):
            off = torch.tensor(self.offset, dtype=points.dtype, device=points.device)
            return points * self.scale + off
        return np.asarray(points) * self.scale + np.asarray(self.offset)

    def apply_inverse(self, points):
        """Map ``(..., 2)`` destination points back to the source image (e.g. predictions on an
        aligned crop back to the photo)."""
        return self.inverse().apply(points)

    def inverse(self) -> ScaleTranslation:
        s = 1.0 / self.scale
        return ScaleTranslation(s, (-self.offset[0] * s, -self.offset[1] * s))

    def then(self, other: ScaleTranslation) -> ScaleTranslation:
        """The transform ``other(self(p))``."""
        return ScaleTranslation(self.scale * other.scale,
                                (other.scale * self.offset[0] + other.offset[0],
                                 other.scale * self.offset[1] + other.offset[1]))

    def matrix(self) -> Tensor:
        """``(3, 3)`` homogeneous matrix (float64)."""
        return torch.tensor([[self.scale, 0.0, self.offset[0]],
                             [0.0, self.scale, self.offset[1]],
                             [0.0, 0.0, 1.0]], dtype=torch.float64)

    @staticmethod
    def identity() -> ScaleTranslation:
        return ScaleTranslation(1.0, (0.0, 0.0))


def warp_scale_translation(image: Tensor, transform: ScaleTranslation, out_size: tuple[int, int],
                           resample: str = "bicubic", fill: float = 0.0) -> Tensor:
    """Resample ``image`` ``(C, H, W)`` (float) onto a ``(C, out_h, out_w)`` grid such that
    destination pixel ``q`` shows source point ``transform.apply_inverse(q)``.

    Uses Pillow's ``resize`` with a float source ``box`` on single-channel float (``F``)
    images, which follows the continuous pixel convention and low-pass filters when shrinking
    (no aliasing). Areas outside the source are ``fill``. ``resample``: ``"nearest"``,
    ``"bilinear"``, ``"bicubic"`` or ``"lanczos"``. Bicubic/lanczos overshoot is not clamped
    here.
    """
    from PIL import Image

    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR,
               "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
    if resample not in filters:
        raise ValueError(f"resample must be one of {sorted(filters)}, got {resample!r}")
    if image.ndim != 3:
        raise ValueError(f"expected (C, H, W), got {tuple(image.shape)}")
    out_h, out_w = int(out_size[0]), int(out_size[1])
    c, h, w = image.shape
    inv = transform.inverse()
    x0, y0 = inv.apply(np.array([0.0, 0.0]))
    x1, y1 = inv.apply(np.array([float(out_w), float(out_h)]))
    # Pad so that the source box lies inside the (padded) image; Pillow rejects negative boxes.
    margin = 2 + int(np.ceil(3.0 / min(transform.scale, 1.0)))  # filter support
    pl = max(0, int(np.ceil(-x0)) + margin)
    pt = max(0, int(np.ceil(-y0)) + margin)
    pr = max(0, int(np.ceil(x1 - w)) + margin)
    pb = max(0, int(np.ceil(y1 - h)) + margin)
    src = image.detach().to("cpu", torch.float32).numpy()
    if pl or pt or pr or pb:
        src = np.pad(src, ((0, 0), (pt, pb), (pl, pr)), mode="constant", constant_values=fill)
    box = (float(x0 + pl), float(y0 + pt), float(x1 + pl), float(y1 + pt))
    out = np.empty((c, out_h, out_w), np.float32)
    for k in range(c):
        im = Image.fromarray(np.ascontiguousarray(src[k]))
        out[k] = np.asarray(im.resize((out_w, out_h), filters[resample], box=box))
    return torch.from_numpy(out).to(image.device, image.dtype if image.is_floating_point() else torch.float32)
