"""WM3DR's single-shot multi-face network, its peak decoding and its per-cell camera decoding.

Zhang, Lin, Zhu, Hoi, "Weakly-Supervised Multi-Face 3D Reconstruction" (seed paper 004),
Sec. III-A: a ResNet encoder with an FPN-like neck at stride 8 and two heads, a 1-channel centre
heatmap and a 3DMM parameter map (257 values per cell); every face is read at the cell of its
heatmap peak, its translation from the cell centre and the predicted (dx, dy, dz) under one
global camera per image (Eqs. 4-6).

Everything here is a pure function or a plain ``nn.Module``; the Lightning side is method.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark3dface.geometry.camera import PerspectiveCamera

#: mm per pixel of the model origin's depth over the focal length at raw depth output 0:
#: a face at this ``dz / f`` has the size it has in Deng's 224-px crop (1000 mm at f = 1015 px)
DEPTH_PER_FOCAL = 1000.0 / 1015.0
#: WM3DR heatmap head bias: sigmoid(-4.59) = 0.01 (focal-loss prior)
HEAT_PRIOR = 0.01

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class L2Scale(nn.Module):
    """Channel-wise L2 normalisation with a learnable scale (SSD / WM3DR neck)."""

    def __init__(self, init: float = 10.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1, eps=1e-6) * self.scale


class WM3DRNet(nn.Module):
    """Backbone + stride-8 neck + heatmap and parameter heads.

    Neck (paper / official demo): p3 = 3x3 conv of the stride-8 stage (layer2) to ``width``;
    p4, p5 = transposed convolutions (x2, x4) of the stride-16 and stride-32 stages (layer3,
    layer4) to ``width``; each L2-normalised with a learnable scale, concatenated and fused by a
    3x3 conv to ``width`` + BN + ReLU. Heads: 3x3 conv (``head_width``) + ReLU + 1x1 conv to 1
    channel (bias ``log(p / (1 - p))`` with p = 0.01) and to ``num_params`` channels
    (normal(0, ``param_init_std``) weights, zero bias: every cell starts at the mean face).

    Args:
        backbone: timm model name with ``features_only`` support and stride-8/16/32 stages
            (``resnet50`` = paper; ``resnet18`` / ``resnet10t`` for CPU runs).
        num_params: the per-cell parameter vector size (the face model's layout size, 257).
        width: neck channels (256 in the paper). head_width: head hidden channels (= width).
    """

    def __init__(self, backbone: str = "resnet50", num_params: int = 257, width: int = 256,
                 head_width: int | None = None, param_init_std: float = 1e-3):
        super().__init__()
        self.backbone_name = backbone
        self.backbone = timm.create_model(backbone, features_only=True, pretrained=False, out_indices=(2, 3, 4))
        red = self.backbone.feature_info.reduction()
        if list(red) != [8, 16, 32]:
            raise ValueError(f"backbone {backbone!r}: stages (2, 3, 4) must have strides 8, 16, 32, got {red}")
        c3, c4, c5 = self.backbone.feature_info.channels()
        self.stride = 8
        self.lat3 = nn.Conv2d(c3, width, 3, padding=1)
        self.up4 = nn.ConvTranspose2d(c4, width, 4, stride=2, padding=1)
        self.up5 = nn.ConvTranspose2d(c5, width, 8, stride=4, padding=2)
        self.norms = nn.ModuleList([L2Scale(), L2Scale(), L2Scale()])
        self.fuse = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        hw = int(head_width or width)
        self.heat_head = nn.Sequential(nn.Conv2d(width, hw, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hw, 1, 1))
        self.param_head = nn.Sequential(nn.Conv2d(width, hw, 3, padding=1), nn.ReLU(inplace=True),
                                        nn.Conv2d(hw, num_params, 1))
        nn.init.constant_(self.heat_head[-1].bias, -math.log((1 - HEAT_PRIOR) / HEAT_PRIOR))
        nn.init.normal_(self.param_head[-1].weight, std=param_init_std)
        nn.init.zeros_(self.param_head[-1].bias)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) in [0, 1] -> (heatmap logits (B, 1, h, w), parameters (B, P, h, w)),
        ``h = ceil(H / 8)``: cell (i, j) covers pixels [8 j, 8 j + 8) x [8 i, 8 i + 8)."""
        x = (image - _MEAN.to(image)) / _STD.to(image)
        f3, f4, f5 = self.backbone(x)
        p3 = self.lat3(f3)
        size = p3.shape[-2:]
        p4, p5 = self.up4(f4), self.up5(f5)
        if p4.shape[-2:] != size:  # sides not divisible by 32
            p4 = F.interpolate(p4, size=size, mode="bilinear", align_corners=False)
        if p5.shape[-2:] != size:
            p5 = F.interpolate(p5, size=size, mode="bilinear", align_corners=False)
        feat = self.fuse(torch.cat([n(p) for n, p in zip(self.norms, (p3, p4, p5))], 1))
        return self.heat_head(feat), self.param_head(feat)


# ---------------------------------------------------------------------------------- peaks
@dataclass
class Peaks:
    """Heatmap peaks of one image: ``cells`` (K, 2) long (row i, column j), ``scores`` (K,)."""

    cells: Tensor
    scores: Tensor


def find_peaks(heat: Tensor, threshold: float = 0.5, kernel: int = 3, max_peaks: int | None = 100) -> list[Peaks]:
    """WM3DR inference: local maxima of the heatmap probabilities (a ``kernel`` x ``kernel``
    max-pool keeps a cell equal to its neighbourhood maximum) above ``threshold``; no NMS.

    Args:
        heat: (B, 1, h, w) probabilities in [0, 1] (sigmoid of the head's logits).
        max_peaks: keep at most this many per image (highest scores), None = all.
    Returns:
        one :class:`Peaks` per image, in descending score order.
    """
    if heat.dim() != 4 or heat.shape[1] != 1:
        raise ValueError(f"heatmap must be (B, 1, h, w), got {tuple(heat.shape)}")
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=kernel // 2)
    keep = (heat == hmax) & (heat > threshold)
    out = []
    for b in range(heat.shape[0]):
        ii, jj = torch.nonzero(keep[b, 0], as_tuple=True)
        s = heat[b, 0, ii, jj]
        order = torch.argsort(s, descending=True, stable=True)
        if max_peaks is not None:
            order = order[:max_peaks]
        out.append(Peaks(torch.stack([ii[order], jj[order]], -1).long(), s[order]))
    return out


def cell_of(centers: Tensor, stride: int, h: int, w: int) -> Tensor:
    """(K, 2) image-pixel centres (u, v) -> (K, 2) long cells (i, j) = (floor(v / s), floor(u / s)),
    clamped to the map (a centre just outside the image goes to the border cell)."""
    j = torch.div(centers[:, 0], stride, rounding_mode="floor").clamp(0, w - 1)
    i = torch.div(centers[:, 1], stride, rounding_mode="floor").clamp(0, h - 1)
    return torch.stack([i, j], -1).long()


def cell_centers(cells: Tensor, stride: int) -> Tensor:
    """(K, 2) cells (i, j) -> (K, 2) pixel centres (u, v) = ((j + 0.5) s, (i + 0.5) s)."""
    return torch.stack([(cells[:, 1].float() + 0.5) * stride, (cells[:, 0].float() + 0.5) * stride], -1)


# ---------------------------------------------------------------------------------- camera
def raw_to_coeffs(raw: Tensor, cells: Tensor, camera: PerspectiveCamera, stride: int, layout,
                  depth_per_focal: float = DEPTH_PER_FOCAL) -> tuple[Tensor, Tensor]:
    """Per-face raw head outputs -> the layout's coefficient vectors, under the image's camera.

    The translation group of ``raw`` holds (dx, dy) in units of the stride (pixels / ``stride``)
    and ``log(dz / (f * depth_per_focal))``: dz = f * depth_per_focal * exp(raw) is the camera
    depth of the face origin (mm), so the face's size in pixels depends on the output only, not
    on the focal length (deviation from the code's ``dz = c + 10`` dm, for faces of 40-300 px
    under one focal length). Eq. 5 (``PerspectiveCamera.translation_from_center``) then gives
    the translation; the other groups pass through.

    Args:
        raw: (K, P) head outputs gathered at ``cells`` (K, 2) (i, j).
    Returns:
        (coeffs (K, P) with the translation in mm, face centres (K, 2) px = image of the origin).
    """
    sl = layout.slice("trans")
    t = raw[:, sl]
    dxy = t[:, :2] * stride
    dz = camera.focal * depth_per_focal * torch.exp(t[:, 2].clamp(-6.0, 6.0))
    base = cell_centers(cells, stride).to(raw)
    trans = camera.translation_from_center(base, torch.cat([dxy, dz[:, None]], -1))
    coeffs = torch.cat([raw[:, :sl.start], trans, raw[:, sl.stop:]], -1)
    return coeffs, base + dxy


def coeffs_to_raw(coeffs: Tensor, cells: Tensor, camera: PerspectiveCamera, stride: int, layout,
                  depth_per_focal: float = DEPTH_PER_FOCAL) -> Tensor:
    """Inverse of :func:`raw_to_coeffs`: the raw outputs that decode to ``coeffs`` at ``cells``
    (used to place known parameters into a parameter map, e.g. the oracle test)."""
    sl = layout.slice("trans")
    t = coeffs[:, sl]
    uv = camera.project(t)  # image of the origin, depth dz
    base = cell_centers(cells, stride).to(coeffs)
    raw_t = torch.stack([(uv[:, 0] - base[:, 0]) / stride, (uv[:, 1] - base[:, 1]) / stride,
                         torch.log(uv[:, 2] / (camera.focal * depth_per_focal))], -1)
    return torch.cat([coeffs[:, :sl.start], raw_t, coeffs[:, sl.stop:]], -1)


def gather_cells(maps: Tensor, image_index: Tensor, cells: Tensor) -> Tensor:
    """(B, P, h, w) maps, (K,) image index, (K, 2) cells -> (K, P) vectors at those cells."""
    return maps[image_index.long(), :, cells[:, 0], cells[:, 1]]


__all__ = ["DEPTH_PER_FOCAL", "HEAT_PRIOR", "Peaks", "WM3DRNet", "cell_centers", "cell_of", "coeffs_to_raw",
           "find_peaks", "gather_cells", "raw_to_coeffs"]
