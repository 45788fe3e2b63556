"""ArcFace identity encoder: the improved ResNet ("iresnet") of insightface's arcface_torch.

Architecture (Deng J. et al., ArcFace, CVPR 2019; Duta et al., improved residual networks),
written here from its published structure so that parameter names match arcface_torch's
``backbone.pth`` (e.g. ``glint360k_cosface_r50_fp16_0.1/backbone.pth`` or ``ms1mv3_arcface_r50``):

- stem: ``conv1`` 3x3/1 (3 -> 64, no bias), ``bn1``, ``prelu``;
- four stages ``layer1..4`` of ``IBlock``s (64, 128, 256, 512 channels, the first block of each
  stage strides by 2): ``bn1 -> conv1 3x3 -> bn2 -> prelu -> conv2 3x3 (stride) -> bn3`` plus the
  shortcut (``downsample`` = 1x1 strided conv + BN when the shape changes), no activation after
  the addition; r50 has (3, 4, 14, 3) blocks;
- head: ``bn2`` (BatchNorm2d 512), flatten (512 x 7 x 7 at 112 input), ``dropout``, ``fc`` ->
  512, ``features`` (BatchNorm1d 512).

Input: 112x112 RGB aligned on the 5-point template, normalised as ``(x - 0.5) / 0.5``.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from .base import IdentityEncoder, load_matching, load_state_file

IRESNET_LAYERS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}
ARCFACE_SOURCE = ("Get it from insightface's arcface_torch model zoo (an iresnet-50 'backbone.pth', "
                  "e.g. ms1mv3_arcface_r50_fp16) and pass its local path as 'arcface:<path>'.")


class IBlock(nn.Module):
    """Pre-activation-style basic block of iresnet (see module docstring)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """iresnet backbone: (B, 3, 112, 112) normalised -> (B, num_features) (unnormalised)."""

    def __init__(self, layers: tuple[int, ...] = IRESNET_LAYERS["r50"], num_features: int = 512,
                 dropout: float = 0.0, input_size: int = 112) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = [IBlock(cin, width, 2)] + [IBlock(width, width, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        side = input_size // 16
        self.fc = nn.Linear(512 * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


class ArcFaceEncoder(IdentityEncoder):
    """ArcFace (iresnet) identity encoder with weights from a local arcface_torch file.

    Args:
        weights: path of an arcface_torch ``backbone.pth`` (state dict); required unless
            ``random_init`` (tests).
        arch: ``r18`` | ``r34`` | ``r50`` (default, Deng's PyTorch code) | ``r100``.
    """

    embedding_dim = 512

    def __init__(self, weights: str | Path | None = None, arch: str = "r50", random_init: bool = False) -> None:
        super().__init__(input_size=112)
        if arch not in IRESNET_LAYERS:
            raise ValueError(f"unknown iresnet arch {arch!r}; choose one of {sorted(IRESNET_LAYERS)}")
        self.net = IResNet(IRESNET_LAYERS[arch])
        if weights is None and not random_init:
            raise ValueError(f"ArcFaceEncoder needs a weights file. {ARCFACE_SOURCE}")
        if weights is not None:
            state = load_state_file(weights, f"ArcFace iresnet-{arch[1:]}", ARCFACE_SOURCE)
            load_matching(self.net, state, weights, f"arcface_torch iresnet-{arch[1:]}")

    def embed(self, x: Tensor) -> Tensor:
        return self.net(x)
