"""face-api's 68-point landmark network in plain PyTorch, converted from the npm package
``@vladmandic/face-api@1.7.15`` (MIT; ``model/face_landmark_68_model*``, tfjs uint8-quantised).

Network (face-api ``FaceLandmark68Net``, own implementation from the facts of the files):

- input: a 112x112 RGB crop of the face, pixel values in [0, 255], minus the mean
  ``[122.782, 117.001, 104.298]``, divided by 255;
- four dense blocks with 32, 64, 128, 256 channels. Block ``k``: ``out1 = relu(conv0(x))``
  (stride 2; a plain 3x3 conv in block 0, depthwise-separable after), then three
  depthwise-separable 3x3 convs ``conv1..conv3`` (stride 1), each fed the ReLU of the running
  sum of the previous outputs; the block returns ``relu(out1 + out2 + out3 + out4)``. All
  convolutions use TF ``"SAME"`` padding (112 -> 56 -> 28 -> 14 -> 7);
- a 7x7 average pool (stride 2, valid) -> 256 features -> fully connected -> 136 values =
  68 (x, y) pairs in [0, 1] of the (square) input crop, x to the right, y down, origin at the
  crop's top-left corner (continuous convention).

Separable conv = depthwise 3x3 (no bias) -> pointwise 1x1 -> + bias, as tfjs's
``separableConv2d`` followed by ``add(bias)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .tfjs import read_weights
from .tfops import SameConv2d, dense_to_torch, depthwise_to_torch, hwio_to_oihw, vector

INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
CHANNELS = (32, 64, 128, 256)
MANIFEST = "model/face_landmark_68_model-weights_manifest.json"
SHARD = "model/face_landmark_68_model.bin"
SOURCE_NAME = "faceapi_landmark68"


class SeparableConv(nn.Module):
    """Depthwise 3x3 (TF "SAME", no bias) -> pointwise 1x1 with bias."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = SameConv2d(cin, cin, 3, stride, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class DenseBlock4(nn.Module):
    """face-api's ``denseBlock4`` (see module docstring)."""

    def __init__(self, cin: int, cout: int, first: bool) -> None:
        super().__init__()
        self.conv0 = SameConv2d(cin, cout, 3, 2) if first else SeparableConv(cin, cout, 2)
        self.conv1 = SeparableConv(cout, cout, 1)
        self.conv2 = SeparableConv(cout, cout, 1)
        self.conv3 = SeparableConv(cout, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        out1 = torch.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(torch.relu(out1 + out2))
        out4 = self.conv3(torch.relu(out1 + out2 + out3))
        return torch.relu(out1 + out2 + out3 + out4)


class FaceLandmark68Net(nn.Module):
    """68 landmarks from a 112x112 face crop.

    ``forward(x)``: ``x`` (B, 3, 112, 112) RGB in [0, 1] (the network's own normalisation is
    applied inside) -> (B, 68, 2) positions in [0, 1] of the crop (multiply by the crop side in
    pixels for continuous pixel coordinates). :meth:`forward_raw` takes the already normalised
    input ((x*255 - mean) / 255) and returns the raw (B, 136) output, as tfjs does.
    """

    def __init__(self) -> None:
        super().__init__()
        cins = (3,) + CHANNELS[:-1]
        for i, (cin, cout) in enumerate(zip(cins, CHANNELS)):
            setattr(self, f"dense{i}", DenseBlock4(cin, cout, first=i == 0))
        self.fc = nn.Linear(CHANNELS[-1], 136)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1) / 255.0, persistent=False)

    def features(self, x: Tensor) -> Tensor:
        """Normalised input -> (B, 256) pooled features."""
        for i in range(len(CHANNELS)):
            x = getattr(self, f"dense{i}")(x)
        x = nn.functional.avg_pool2d(x, 7, 2)  # 7x7 -> 1x1, valid
        return x.flatten(1)

    def forward_raw(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        x = x - self.mean.to(x.dtype)
        return self.forward_raw(x).view(-1, 68, 2)


def _sep(weights: dict[str, np.ndarray], prefix: str, key: str, out: dict[str, Tensor]) -> None:
    out[f"{key}.dw.weight"] = depthwise_to_torch(weights[f"{prefix}/depthwise_filter"])
    out[f"{key}.pw.weight"] = hwio_to_oihw(weights[f"{prefix}/pointwise_filter"])
    out[f"{key}.pw.bias"] = vector(weights[f"{prefix}/bias"])


def state_dict_from_weights(weights: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """tfjs weight map (names as in the manifest) -> :class:`FaceLandmark68Net` state dict."""
    from ..weights import ConversionError

    out: dict[str, Tensor] = {}
    try:
        for i in range(len(CHANNELS)):
            for j in range(4):
                prefix, key = f"dense{i}/conv{j}", f"dense{i}.conv{j}"
                if i == 0 and j == 0:
                    out[f"{key}.weight"] = hwio_to_oihw(weights[f"{prefix}/filters"])
                    out[f"{key}.bias"] = vector(weights[f"{prefix}/bias"])
                else:
                    _sep(weights, prefix, key, out)
        out["fc.weight"] = dense_to_torch(weights["fc/weights"])
        out["fc.bias"] = vector(weights["fc/bias"])
    except KeyError as exc:
        raise ConversionError(f"face-api landmark weights lack the tensor {exc.args[0]!r}") from None
    ref = FaceLandmark68Net().state_dict()
    bad = [k for k in ref if k not in out or tuple(out[k].shape) != tuple(ref[k].shape)]
    if bad or len(out) != len(ref):
        raise ConversionError(f"face-api landmark weights do not fit the network: {bad[:5]}")
    return out


def convert(paths: dict[str, Path]) -> dict[str, Tensor]:
    """Converter of the ``faceapi_landmark68`` source: the manifest + its shard -> state dict.
    The shard is looked up beside the manifest (as tfjs does)."""
    from ..weights import ConversionError

    manifest_path = Path(paths[MANIFEST])
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{manifest_path}: not a readable weights manifest ({exc})") from exc
    folder = Path(paths[SHARD]).parent
    from .tfjs import TfjsFormatError

    try:
        weights = read_weights(manifest, folder, str(manifest_path))
    except TfjsFormatError as exc:
        raise ConversionError(str(exc)) from exc
    return state_dict_from_weights(weights)


def load_landmark_net(device: str | torch.device = "cpu") -> FaceLandmark68Net:
    """The converted network from the weights cache (``b3f weights fetch faceapi_landmark68``),
    in eval mode on ``device``. Raises ``WeightsNotFetchedError`` when not cached."""
    from ..weights import load_state_dict

    net = FaceLandmark68Net()
    net.load_state_dict(load_state_dict(SOURCE_NAME))
    return net.eval().to(device)


def _register() -> None:
    from ..weights import WeightSource, register_source

    register_source(WeightSource(
        name=SOURCE_NAME, registry="npm", package="@vladmandic/face-api", version="1.7.15",
        files=(MANIFEST, SHARD),
        sha256={MANIFEST: "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
                SHARD: "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b"},
        licence="MIT",
        used_for="68 facial landmarks on real photos (preprocessing, b3f reconstruct, the 'detector' landmark source)",
        convert="benchmark3dface.facenets.faceapi:convert",
        reference="face-api FaceLandmark68Net run by @tensorflow/tfjs 4.22 (CPU backend) in node",
    ))


_register()
