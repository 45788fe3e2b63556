"""Deng's 5-point alignment, generalised to any face model and crop size.

What Deng et al.'s preprocessing does (``align_img`` with ``rescale_factor=102``, crop 224):
it fits, by least squares, a scale ``s`` and translation ``t`` (no rotation) between the
photo's 5 points and the 5 mean-face landmarks (model units, decimetres for BFM after /1e5,
orthographic, y flipped), rescales the photo by ``102 / s`` so that one model unit spans 102
pixels, and crops 224x224 around the image of the model origin. 102 px per decimetre is, within
0.5 %, the perspective scale ``f / D = 1015 / 10`` of the default camera (f = 1015 px, camera
10 dm from the origin): the aligned face therefore has the size and position at which the mean
face, placed at the origin with zero pose, renders with the default camera. The network then
only has to predict small residual translations.

Generalisation used here: the alignment target is an *input*, ``target5`` ``(5, 2)`` in crop
pixels for crop size ``S``. :func:`deng_target_points` computes it by projecting the mean
face's 5 points with the perspective camera of docs/conventions.md at size ``S``
(``f = 1015 S / 224``, ``c = S / 2``, ``D = 1000 mm``); :func:`deng_target_points_orthographic`
reproduces Deng's orthographic ``rescale_factor`` rule (``rescale_factor * S / 224`` px per
decimetre). :func:`fit_scale_translation` solves ``min_{s,t} sum_i w_i ||s p_i + t - q_i||^2``
(image points p -> target points q) in closed form, and :func:`align_face` warps the photo with
that transform (Pillow resampling with anti-aliasing; continuous pixel convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..readers.annotations import lm5_from_lm68
from ..readers.imageio import as_float_chw
from .transform import ScaleTranslation, warp_scale_translation

#: Smallest photo side accepted by the preprocessing, pixels: MTCNN's smallest face (its default
#: ``min_face_size``); a smaller photo has no detector pyramid level and no usable face.
MIN_PHOTO_SIDE = 20

#: How far outside the photo an alignment landmark may lie, as a fraction of the photo's longer
#: side (faces cut by the border have points slightly outside; beyond this the crop would be
#: mostly black padding, so the landmarks are wrong for this photo).
LANDMARK_MARGIN_FRACTION = 0.25

#: Deng's focal length for a 224 crop (pixels) and camera distance (millimetres).
DENG_FOCAL_224 = 1015.0
DENG_CAMERA_DISTANCE_MM = 1000.0
DENG_RESCALE_FACTOR = 102.0


def project_perspective(points_mm: Tensor, crop_size: int, focal_224: float = DENG_FOCAL_224,
                        distance_mm: float = DENG_CAMERA_DISTANCE_MM) -> Tensor:
    """Project model-frame points ``(..., 3)`` mm (identity pose) with the default camera of
    docs/conventions.md at image size ``S``: ``u = S/2 + f x / (D - z)``,
    ``v = S/2 - f y / (D - z)``, ``f = focal_224 * S / 224``. Returns ``(..., 2)`` pixels."""
    s = float(crop_size)
    f = focal_224 * s / 224.0
    zc = distance_mm - points_mm[..., 2]
    u = s / 2 + f * points_mm[..., 0] / zc
    v = s / 2 - f * points_mm[..., 1] / zc
    return torch.stack([u, v], dim=-1)


def deng_target_points(mean_shape_mm: Tensor, landmark_indices: Tensor, crop_size: int = 224,
                       focal_224: float = DENG_FOCAL_224,
                       distance_mm: float = DENG_CAMERA_DISTANCE_MM) -> Tensor:
    """Target 5 points ``(5, 2)`` (crop pixels) for a crop of size ``crop_size``.

    Args:
        mean_shape_mm: ``(N, 3)`` mean face, millimetres, model frame (x right, y up, z toward
            the camera; centred as the face model provides it).
        landmark_indices: ``(68,)`` iBUG-68 vertex indices.
    The 68 landmark vertices are projected with the default perspective camera, then reduced
    to Deng's 5 points (eye centres = mean(36, 39), mean(42, 45); 30; 48; 54)."""
    idx = torch.as_tensor(landmark_indices, dtype=torch.long)
    if idx.shape != (68,):
        raise ValueError(f"landmark_indices must have shape (68,), got {tuple(idx.shape)}")
    lm = project_perspective(mean_shape_mm[idx].double(), crop_size, focal_224, distance_mm)
    return lm5_from_lm68(lm).float()


def deng_target_points_orthographic(mean_shape_mm: Tensor, landmark_indices: Tensor,
                                    crop_size: int = 224,
                                    rescale_factor: float = DENG_RESCALE_FACTOR) -> Tensor:
    """Deng's original rule: orthographic projection with ``rescale_factor * S / 224`` pixels
    per decimetre (100 mm) about the crop centre: ``u = S/2 + k x``, ``v = S/2 - k y``."""
    idx = torch.as_tensor(landmark_indices, dtype=torch.long)
    pts = mean_shape_mm[idx].double()
    k = rescale_factor * crop_size / 224.0 / 100.0
    lm = torch.stack([crop_size / 2 + k * pts[:, 0], crop_size / 2 - k * pts[:, 1]], dim=-1)
    return lm5_from_lm68(lm).float()


def landmark_margin_px(height: int, width: int, fraction: float = LANDMARK_MARGIN_FRACTION) -> float:
    """The allowed distance (pixels) of a landmark outside an ``height x width`` photo:
    ``fraction * max(height, width)``."""
    return float(fraction) * float(max(height, width))


def points_outside(points: Tensor, height: int, width: int, margin_px: float) -> Tensor:
    """``(K,)`` bool: which of ``points`` ``(K, 2)`` (continuous pixels, top-left origin, the
    photo spans ``[0, W] x [0, H]``) lie more than ``margin_px`` outside the photo."""
    p = torch.as_tensor(points, dtype=torch.float64)
    u, v = p[..., 0], p[..., 1]
    m = float(margin_px)
    return (u < -m) | (u > width + m) | (v < -m) | (v > height + m)


def fit_scale_translation(src: Tensor, dst: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Least-squares scale and translation with ``s * src + t ~ dst`` (no rotation).

    Args:
        src: ``(..., K, 2)`` points (e.g. the photo's 5 landmarks, pixels).
        dst: ``(..., K, 2)`` or ``(K, 2)`` targets (crop pixels).
        weights: optional ``(K,)`` or ``(..., K)`` non-negative weights.
    Returns:
        ``scale (...,)`` and ``translation (..., 2)``. Closed form: with weighted centroids
        ``p̄, q̄``, ``s = Σ w (p - p̄)·(q - q̄) / Σ w |p - p̄|²`` and ``t = q̄ - s p̄``.
    """
    src = src.double()
    dst = dst.double().expand_as(src)
    w = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device) if weights is None \
        else torch.as_tensor(weights, dtype=src.dtype, device=src.device).expand(src.shape[:-1])
    wsum = w.sum(-1, keepdim=True)
    pc = (w[..., None] * src).sum(-2) / wsum
    qc = (w[..., None] * dst).sum(-2) / wsum
    p0, q0 = src - pc[..., None, :], dst - qc[..., None, :]
    num = (w * (p0 * q0).sum(-1)).sum(-1)
    den = (w * (p0 * p0).sum(-1)).sum(-1)
    if bool((den <= 1e-12).any()):
        raise ValueError("degenerate source points (all coincide): cannot fit a scale")
    scale = num / den
    return scale, qc - scale[..., None] * pc


@dataclass
class AlignedFace:
    """Result of :func:`align_face`.

    Attributes:
        image: ``(3, S, S)`` float in [0, 1], the aligned crop.
        transform: photo pixels -> crop pixels (``transform.apply_inverse`` maps crop
            predictions back to the photo).
        lm5: ``(5, 2)`` the photo's 5 points in crop pixels.
        lm68: ``(68, 2)`` crop pixels, when 68 points were given.
        residual: RMS distance (crop pixels) between the transformed 5 points and the targets.
    """

    image: Tensor
    transform: ScaleTranslation
    lm5: Tensor
    lm68: Tensor | None
    residual: float


def align_face(image, lm5: Tensor, target5: Tensor, crop_size: int = 224, *,
               lm68: Tensor | None = None, resample: str = "bicubic") -> AlignedFace:
    """Align and crop a photo with Deng's scale + translation 5-point rule.

    Args:
        image: ``(3, H, W)`` float tensor in [0, 1], ``uint8`` HxWx3 array or Pillow image.
        lm5: ``(5, 2)`` photo landmarks, pixels, Deng's order.
        target5: ``(5, 2)`` target points for this crop size (e.g. :func:`deng_target_points`).
        crop_size: output size S.
        lm68: optional ``(68, 2)`` photo landmarks to carry into the crop.
    """
    lm5 = torch.as_tensor(lm5, dtype=torch.float64)
    target5 = torch.as_tensor(target5, dtype=torch.float64)
    if lm5.shape != (5, 2) or target5.shape != (5, 2):
        raise ValueError(f"lm5 and target5 must be (5, 2), got {tuple(lm5.shape)} and {tuple(target5.shape)}")
    if not torch.isfinite(lm5).all():
        raise ValueError("lm5 contains NaN/inf")
    s, t = fit_scale_translation(lm5, target5)
    if float(s) <= 0:
        raise ValueError("alignment gave a non-positive scale (landmarks mirrored or in the wrong order?)")
    tr = ScaleTranslation(float(s), (float(t[0]), float(t[1])))
    img = as_float_chw(image)
    crop = warp_scale_translation(img, tr, (crop_size, crop_size), resample).clamp_(0.0, 1.0)
    lm5_c = tr.apply(lm5)
    res = float(((lm5_c - target5) ** 2).sum(-1).mean().sqrt())
    lm68_c = None if lm68 is None else tr.apply(torch.as_tensor(lm68, dtype=torch.float32))
    return AlignedFace(crop, tr, lm5_c.float(), lm68_c, res)
