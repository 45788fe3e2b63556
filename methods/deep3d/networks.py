"""R-Net (coefficient regressor) and C-Net (confidence subnet) of Deng et al. 2019.

Deng, Yang, Xu, Chen, Jia, Tong, "Accurate 3D Face Reconstruction with Weakly-Supervised
Learning: From Single Image to Image Set", CVPRW 2019 (seed paper 000).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn


class RNet(nn.Module):
    """A timm backbone regressing the coefficient vector (Deng: ResNet-50 -> 257).

    ``forward`` returns the coefficients and the two feature maps C-Net consumes: the output of
    the first residual stage and the globally pooled last stage. (Deng's TF-slim ResNet strides
    at the end of its first block, giving 28x28 at 224 input; timm's first stage keeps 56x56 —
    C-Net's three stride-2 convolutions and global pooling handle either.)

    Args:
        backbone: any timm model name with ``features_only`` support (resnet50, resnet18 ...).
        num_coeffs: output size (the face model's layout size).
        weights: optional local path of backbone weights (a timm/torchvision state dict); nothing
            is ever downloaded.
        zero_init_head: zero the final layer (the official PyTorch code's choice: training starts
            from the mean face at the default pose).
        output_scale: optional (num_coeffs,) factors applied to the head's output (see
            :func:`coefficient_output_scale`: Deng's network predicts the translation in decimetres, the
            framework's coefficients hold millimetres).
        head_grid: the head reads the last feature map average-pooled to ``head_grid x head_grid``
            cells (1 = global average pooling, Deng's ResNet; > 1 keeps a coarse spatial layout,
            which a network trained from scratch on a small budget regresses pose from faster).
    """

    def __init__(self, backbone: str = "resnet50", num_coeffs: int = 257, weights: str | None = None,
                 zero_init_head: bool = True, output_scale: Tensor | None = None, head_grid: int = 1):
        super().__init__()
        if head_grid < 1:
            raise ValueError(f"head_grid must be >= 1, got {head_grid}")
        self.head_grid = int(head_grid)
        scale = torch.ones(num_coeffs) if output_scale is None else torch.as_tensor(output_scale, dtype=torch.float32)
        if scale.shape != (num_coeffs,):
            raise ValueError(f"output_scale must have shape ({num_coeffs},), got {tuple(scale.shape)}")
        self.register_buffer("output_scale", scale.clone(), persistent=False)
        self.backbone = timm.create_model(backbone, pretrained=False, features_only=True)
        if weights:
            load_backbone_weights(self.backbone, weights)
        chans = self.backbone.feature_info.channels()
        self.stage1_channels = chans[1] if len(chans) > 1 else chans[0]
        self.feature_dim = chans[-1]
        self.head = nn.Linear(self.feature_dim * self.head_grid ** 2, num_coeffs)
        if zero_init_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 3, H, W) in [0, 1] -> (coeffs (B, C), stage-1 features, pooled features (B, D))."""
        feats = self.backbone(normalize_imagenet(image))
        pooled = feats[-1].mean((2, 3))
        stage1 = feats[1] if len(feats) > 1 else feats[0]
        head_in = pooled if self.head_grid == 1 else \
            torch.nn.functional.adaptive_avg_pool2d(feats[-1], self.head_grid).flatten(1)
        return self.head(head_in) * self.output_scale, stage1, pooled


def coefficient_output_scale(layout, trans_unit_mm: float = 100.0, shape_scale: float = 1.0) -> Tensor:
    """Per-coefficient output factors for a layout: ``trans_unit_mm`` on the translation group
    (100 = the network predicts decimetres, Deng's BFM unit; the coefficients are millimetres),
    ``shape_scale`` on the identity and expression groups (1 = Deng; < 1 slows their learning
    relative to pose under Adam), 1 elsewhere (albedo in prior standard deviations, radians, SH)."""
    scale = torch.ones(layout.size)
    scale[layout.slice("trans")] = float(trans_unit_mm)
    scale[layout.slice("id")] = float(shape_scale)
    scale[layout.slice("exp")] = float(shape_scale)
    return scale


class CNet(nn.Module):
    """Confidence subnet: three 3x3 stride-2 convs (256 ch) on stage-1 features + global pool,
    concatenated with the pooled R-Net feature, FC 512 -> FC out -> sigmoid. The last FC is
    zero-initialised so training starts from plain averaging (all confidences 0.5).

    ``out_dim`` is 80 (the identity size) for element-wise aggregation (S4) and 1 for the global
    score variant (S1).
    """

    def __init__(self, stage1_channels: int, feature_dim: int, out_dim: int = 80, width: int = 256):
        super().__init__()
        layers, c = [], stage1_channels
        for _ in range(3):
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = width
        self.convs = nn.Sequential(*layers)
        self.fc1 = nn.Linear(width + feature_dim, 512)
        self.fc2 = nn.Linear(512, out_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, stage1: Tensor, pooled: Tensor) -> Tensor:
        f = self.convs(stage1).mean((2, 3))
        h = torch.relu(self.fc1(torch.cat([f, pooled], -1)))
        return torch.sigmoid(self.fc2(h))


AGGREGATIONS = ("mean", "S1", "S2", "S3", "S4")


def aggregate_identity(alpha: Tensor, conf: Tensor | None, strategy: str = "S4") -> Tensor:
    """Aggregate per-image identity coefficients of a set (Deng's Table 4 strategies).

    Args:
        alpha: (B, M, K) identity coefficients of B sets of M images.
        conf: (B, M, K) element-wise confidences (S2, S3, S4), (B, M, 1) global scores (S1), or
            None for ``mean`` (shape averaging: coefficient averaging, the model being linear).
        strategy: ``mean`` | ``S1`` global score c^j | ``S2`` global weight sum_i c_i^j |
            ``S3`` the single image with the largest sum_i c_i^j | ``S4`` element-wise.
    Returns:
        (B, K) aggregated identity coefficients.
    """
    if strategy == "mean":
        return alpha.mean(1)
    if conf is None:
        raise ValueError(f"aggregation {strategy} needs confidences")
    if strategy == "S4":
        return (conf * alpha).sum(1) / conf.sum(1).clamp_min(1e-8)
    if strategy in ("S1", "S2"):
        w = conf if strategy == "S1" else conf.sum(-1, keepdim=True)
        w = w[..., :1] if strategy == "S1" else w
        return (w * alpha).sum(1) / w.sum(1).clamp_min(1e-8)
    if strategy == "S3":
        best = conf.sum(-1).argmax(1)
        return alpha[torch.arange(alpha.shape[0], device=alpha.device), best]
    raise ValueError(f"unknown aggregation {strategy!r}; choose one of {AGGREGATIONS}")


_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def normalize_imagenet(image: Tensor) -> Tensor:
    return (image - _MEAN.to(image)) / _STD.to(image)


def load_backbone_weights(module: nn.Module, path: str) -> None:
    """Load a local state dict into a timm ``features_only`` backbone (classifier keys ignored;
    a ``backbone.`` key prefix, as in the framework's IdNet files, is stripped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights {p} not found: give a local state-dict file (e.g. timm's "
                                f"resnet50 weights saved with torch.save(model.state_dict())); nothing is downloaded")
    state = torch.load(p, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:  # a wrapped backbone, e.g. the framework's IdNet file (keys "backbone.*")
        matched = {k[len("backbone."):]: v for k, v in state.items()
                   if k.startswith("backbone.") and own.get(k[len("backbone."):], None) is not None
                   and own[k[len("backbone."):]].shape == v.shape}
    if not matched:
        raise ValueError(f"{p}: no tensor matches the backbone's parameter names/shapes")
    module.load_state_dict(matched, strict=False)
