"""DF-MVR networks (Zhao et al., seed 001): involution, RedNet, Tri-UNet and the Table IV
feature extractors, in plain PyTorch.

- :class:`Involution` (Li et al. CVPR 2021): a spatial- and group-specific ``K x K`` kernel
  generated from each pixel's features (``avgpool(stride) -> 1x1 conv (C -> C/r) -> BN -> ReLU
  -> 1x1 conv (C/r -> K*K*G)``), applied with ``unfold`` (no compiled kernel); the ``C``
  channels are split in ``G = C / group_channels`` groups that share one kernel each.
- :class:`RedNet`: ResNet bottlenecks with the 3x3 convolution replaced by involution
  (RedNet-26: blocks (1, 2, 4, 1); RedNet-50: (3, 4, 6, 3)); ``conv=True`` gives the same
  network with the 3x3 convolution kept (ResNet, Table IV v3).
- :class:`TriUNet` (Sec. III-C): three encoders sharing no weights (DoubleConv + max-pool), their
  deepest features concatenated and fused, one shared decoder; at each decoder level an attention
  gate per view on that view's skip features, the gated skips concatenated with the upsampled
  decoder features and a DoubleConv; a 1x1 conv to the fused channels (paper 64, code 256).
- :class:`StackedUNet` (Table IV v2: one U-Net on the channel-stacked views) and
  :class:`PlainCNN` (v1: a plain conv stack on the stacked views).
- :class:`CoefficientHeads`: global pooling -> shared identity / expression / texture / SH and
  one rotation (3) + translation (3) per view; sizes from the face model's layout (269 outputs
  for Deng's layout and three views).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ---------------------------------------------------------------------------- involution
class Involution(nn.Module):
    """Involution (kernel ``kernel_size``, ``group_channels`` channels per group, reduction
    ``reduction``), stride 1 or 2, padding ``K // 2``.  ``(B, C, H, W) -> (B, C, H', W')``."""

    def __init__(self, channels: int, kernel_size: int = 7, stride: int = 1, group_channels: int = 16,
                 reduction: int = 4):
        super().__init__()
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.group_channels = max(1, min(int(group_channels), self.channels))
        if self.channels % self.group_channels:
            raise ValueError(f"involution: {channels} channels are not a multiple of group_channels {group_channels}")
        self.groups = self.channels // self.group_channels
        hidden = max(1, self.channels // int(reduction))
        self.reduce = nn.Sequential(nn.Conv2d(self.channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                    nn.ReLU(inplace=True))
        self.span = nn.Conv2d(hidden, self.kernel_size ** 2 * self.groups, 1)
        self.pool = nn.AvgPool2d(self.stride, self.stride, ceil_mode=True) if self.stride > 1 else nn.Identity()

    def kernel(self, x: Tensor) -> Tensor:
        """The generated kernels ``(B, G, K*K, H', W')``."""
        w = self.span(self.reduce(self.pool(x)))
        b, _, h, wd = w.shape
        return w.view(b, self.groups, self.kernel_size ** 2, h, wd)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        k = self.kernel(x)
        ho, wo = k.shape[-2:]
        cols = F.unfold(x, self.kernel_size, padding=self.kernel_size // 2, stride=self.stride)
        cols = cols.view(b, self.groups, self.group_channels, self.kernel_size ** 2, ho, wo)
        return (k.unsqueeze(2) * cols).sum(3).view(b, c, ho, wo)


# ---------------------------------------------------------------------------- RedNet
class Bottleneck(nn.Module):
    """ResNet bottleneck ``1x1 -> (involution | 3x3 conv) -> 1x1`` with expansion 4."""

    expansion = 4

    def __init__(self, in_ch: int, mid: int, stride: int = 1, involution: bool = True, kernel_size: int = 7,
                 group_channels: int = 16, reduction: int = 4):
        super().__init__()
        out = mid * self.expansion
        self.conv1 = nn.Sequential(nn.Conv2d(in_ch, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        mixer = (Involution(mid, kernel_size, stride, group_channels, reduction) if involution
                 else nn.Conv2d(mid, mid, 3, stride, 1, bias=False))
        self.conv2 = nn.Sequential(mixer, nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(nn.Conv2d(mid, out, 1, bias=False), nn.BatchNorm2d(out))
        self.down = (nn.Identity() if stride == 1 and in_ch == out else
                     nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                                   nn.Conv2d(in_ch, out, 1, bias=False), nn.BatchNorm2d(out)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + self.down(x))


REDNET_DEPTHS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3)}


class RedNet(nn.Module):
    """RedNet-26/38/50 on a feature map: stem (3x3 conv, stride 2) + four stages of bottlenecks
    (stage widths ``width * (1, 2, 4, 8)``, x4 expansion; stages 2-4 stride 2), global average
    pooling.  ``involution=False``: the same ResNet with 3x3 convolutions (Table IV v3)."""

    def __init__(self, in_ch: int, depth: int = 50, width: int = 64, involution: bool = True,
                 kernel_size: int = 7, group_channels: int = 16, reduction: int = 4):
        super().__init__()
        if depth not in REDNET_DEPTHS:
            raise ValueError(f"RedNet depth must be one of {sorted(REDNET_DEPTHS)}, got {depth}")
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        layers, ch = [], width
        for i, n in enumerate(REDNET_DEPTHS[depth]):
            mid = width * 2 ** i
            for j in range(n):
                layers.append(Bottleneck(ch, mid, 2 if (j == 0 and i > 0) else 1, involution, kernel_size,
                                         group_channels, reduction))
                ch = mid * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(self.stem(x)).mean((2, 3))


# ---------------------------------------------------------------------------- U-Nets
class DoubleConv(nn.Sequential):
    """``(3x3 conv -> BN -> ReLU) x 2``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True), nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """U-Net encoder: DoubleConv at each level, max-pool between levels.  Returns the per-level
    features (skips first, the deepest last)."""

    def __init__(self, in_ch: int, widths: Sequence[int]):
        super().__init__()
        chans = [in_ch, *widths]
        self.levels = nn.ModuleList(DoubleConv(a, b) for a, b in zip(chans[:-1], chans[1:]))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., Attention U-Net): ``alpha = sigmoid(psi(relu(W_g g
    + W_x x)))``, returns ``x * alpha`` (``g`` the decoder features at the skip's resolution)."""

    def __init__(self, g_ch: int, x_ch: int, inter: int):
        super().__init__()
        self.wg = nn.Sequential(nn.Conv2d(g_ch, inter, 1), nn.BatchNorm2d(inter))
        self.wx = nn.Sequential(nn.Conv2d(x_ch, inter, 1), nn.BatchNorm2d(inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        return x * self.psi(F.relu(self.wg(g) + self.wx(x)))


class _Decoder(nn.Module):
    """Shared decoder: at each level ConvTranspose up, one attention gate per skip source, concat,
    DoubleConv; a final 1x1 conv to ``out_channels``."""

    def __init__(self, widths: Sequence[int], sources: int, out_channels: int, bottleneck_in: int, gated: bool):
        super().__init__()
        widths = list(widths)
        self.fuse = DoubleConv(bottleneck_in, widths[-1])
        self.ups, self.gates, self.convs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.gated = gated
        for lvl in range(len(widths) - 2, -1, -1):
            w_in, w = widths[lvl + 1], widths[lvl]
            self.ups.append(nn.ConvTranspose2d(w_in, w, 2, stride=2))
            self.gates.append(nn.ModuleList(AttentionGate(w, w, max(1, w // 2)) for _ in range(sources))
                              if gated else nn.ModuleList())
            self.convs.append(DoubleConv(w * (1 + sources), w))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, deepest: Tensor, skips: list[list[Tensor]]) -> Tensor:
        """``skips[s][lvl]``: source s's features at encoder level lvl (deepest excluded)."""
        x = self.fuse(deepest)
        n = len(self.ups)
        for i, (up, gates, conv) in enumerate(zip(self.ups, self.gates, self.convs)):
            lvl = n - 1 - i
            x = up(x)
            feats = [gates[s](x, skips[s][lvl]) if self.gated else skips[s][lvl] for s in range(len(skips))]
            x = conv(torch.cat([x, *feats], 1))
        return self.head(x)


class TriUNet(nn.Module):
    """Tri-UNet: ``views`` unshared encoders (DoubleConv + max-pool, ``widths``; paper 64..1024),
    the deepest features concatenated and fused, one decoder with an attention gate per view at
    each level.  ``(B, V, C, H, W) -> (B, out_channels, H, W)``."""

    def __init__(self, in_ch: int, widths: Sequence[int] = (64, 128, 256, 512, 1024), out_channels: int = 64,
                 views: int = 3):
        super().__init__()
        self.views = views
        self.encoders = nn.ModuleList(Encoder(in_ch, widths) for _ in range(views))
        self.decoder = _Decoder(widths, views, out_channels, widths[-1] * views, gated=True)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        feats = [enc(x[:, v]) for v, enc in enumerate(self.encoders)]
        deepest = torch.cat([f[-1] for f in feats], 1)
        return self.decoder(deepest, [f[:-1] for f in feats])


class StackedUNet(nn.Module):
    """Table IV v2: one U-Net (one encoder, plain skips) on the channel-stacked views."""

    def __init__(self, in_ch: int, widths: Sequence[int] = (64, 128, 256, 512, 1024), out_channels: int = 64,
                 views: int = 3):
        super().__init__()
        self.encoder = Encoder(in_ch * views, widths)
        self.decoder = _Decoder(widths, 1, out_channels, widths[-1], gated=False)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        f = self.encoder(x.flatten(1, 2))
        return self.decoder(f[-1], [f[:-1]])


class PlainCNN(nn.Module):
    """Table IV v1: a plain conv stack (DoubleConv per width, no down-sampling) on the
    channel-stacked views -- the features go to the regressor without any fusion network."""

    def __init__(self, in_ch: int, widths: Sequence[int] = (64,), out_channels: int = 64, views: int = 3):
        super().__init__()
        chans = [in_ch * views, *widths]
        self.body = nn.Sequential(*(DoubleConv(a, b) for a, b in zip(chans[:-1], chans[1:])),
                                  nn.Conv2d(chans[-1], out_channels, 1))
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.flatten(1, 2))


FUSIONS = {"triunet": TriUNet, "unet": StackedUNet, "cnn": PlainCNN}


# ---------------------------------------------------------------------------- heads
def batch_to_group_norm(module: nn.Module, max_groups: int = 8) -> nn.Module:
    """Replaces every ``BatchNorm2d`` under ``module`` by a ``GroupNorm`` with the largest group
    count <= ``max_groups`` that divides its channels (affine, same channels), in place.

    Why: BatchNorm's running statistics are gathered mostly on three-view inputs, so a one-view
    input (two black views) is out of their distribution at test time; through the multiplicative
    involution kernels that blew 19 of 100 single-view outputs up to non-finite values in a quick
    run (they stayed finite with batch statistics). GroupNorm uses each sample's own statistics,
    identical in training and evaluation."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            g = next(k for k in range(min(max_groups, c), 0, -1) if c % k == 0)
            setattr(module, name, nn.GroupNorm(g, c))
        else:
            batch_to_group_norm(child, max_groups)
    return module


class CoefficientHeads(nn.Module):
    """Pooled features -> shared (id, exp, tex, sh) + per-view (angles 3, translation 3).

    ``forward`` returns ``(shared (B, S), pose (B, V, 6))`` with the translation in mm
    (network unit ``trans_unit_mm``), zero-initialised (mean face, no rotation, translation 0)
    plus per-view yaw offsets ``init_yaws_deg`` in the bias (the rig's nominal view yaws)."""

    def __init__(self, in_features: int, shared: Sequence[tuple[str, int]], views: int = 3,
                 trans_unit_mm: float = 100.0, init_yaws_deg: Sequence[float] | None = None):
        super().__init__()
        self.shared_groups = [(n, int(k)) for n, k in shared]
        self.views = views
        self.shared = nn.Linear(in_features, sum(k for _, k in self.shared_groups))
        self.pose = nn.ModuleList(nn.Linear(in_features, 6) for _ in range(views))
        for lin in (self.shared, *self.pose):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        if init_yaws_deg is not None:
            if len(init_yaws_deg) != views:
                raise ValueError(f"init_yaws_deg needs {views} values, got {list(init_yaws_deg)}")
            with torch.no_grad():
                for lin, yaw in zip(self.pose, init_yaws_deg):
                    lin.bias[1] = float(yaw) * torch.pi / 180.0
        self.register_buffer("pose_scale", torch.tensor([1.0, 1.0, 1.0, trans_unit_mm, trans_unit_mm, trans_unit_mm]),
                             persistent=False)

    @property
    def num_outputs(self) -> int:
        return self.shared.out_features + 6 * self.views

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        pose = torch.stack([p(feats) for p in self.pose], 1) * self.pose_scale
        return self.shared(feats), pose


__all__ = ["AttentionGate", "Bottleneck", "CoefficientHeads", "DoubleConv", "Encoder", "FUSIONS", "Involution",
           "PlainCNN", "REDNET_DEPTHS", "RedNet", "StackedUNet", "TriUNet"]
