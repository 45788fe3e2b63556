"""tfjs readers on tiny files written here in the true formats, and TF "SAME" padding (no weights,
no network)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark3dface.facenets.tfjs import (TfjsFormatError, read_graph_model, read_weights_manifest,
                                           same_padding)
from benchmark3dface.facenets.tfops import SameConv2d, depthwise_to_torch, hwio_to_oihw, max_pool_same


def _write_manifest(tmp_path, truncate: int = 0, extra: bytes = b""):
    """A two-group manifest: group 0 split over two shards (the split falls inside a weight)."""
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    q = bytes([0, 1, 2, 255])                      # uint8, scale 0.5, min -1
    h = np.array([1.5, -2.25], dtype="<f2")        # float16
    u = np.array([256, 3], dtype="<u2")            # uint16, scale 0.25, min 10
    i = np.array([7, -3], dtype="<i4")
    buf0 = a.tobytes() + q + h.tobytes()
    buf1 = u.tobytes() + i.tobytes() + extra
    buf1 = buf1[:len(buf1) - truncate]
    (tmp_path / "w-shard1of2.bin").write_bytes(buf0[:10])
    (tmp_path / "w-shard2of2.bin").write_bytes(buf0[10:])
    (tmp_path / "w2.bin").write_bytes(buf1)
    manifest = [
        {"paths": ["w-shard1of2.bin", "w-shard2of2.bin"], "weights": [
            {"name": "a", "shape": [2, 3], "dtype": "float32"},
            {"name": "q", "shape": [4], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
            {"name": "h", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        ]},
        {"paths": ["w2.bin"], "weights": [
            {"name": "u", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "uint16", "scale": 0.25, "min": 10.0}},
            {"name": "i", "shape": [2], "dtype": "int32"},
        ]},
    ]
    path = tmp_path / "w-weights_manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def test_weights_manifest_known_values(tmp_path):
    w = read_weights_manifest(_write_manifest(tmp_path))
    assert list(w) == ["a", "q", "h", "u", "i"]
    assert w["a"].dtype == np.float32 and w["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert w["q"].tolist() == [-1.0, -0.5, 0.0, 126.5]          # q * 0.5 - 1
    assert w["h"].tolist() == [1.5, -2.25]
    assert w["u"].tolist() == [74.0, 10.75]                       # 256 * 0.25 + 10, 3 * 0.25 + 10
    assert w["i"].dtype == np.int32 and w["i"].tolist() == [7, -3]


def test_dequantisation_in_float64():
    from benchmark3dface.facenets.tfjs import decode_weight

    # the first quantisation of face-api's landmark net: q=1 gives a different float32 when the
    # affine map is evaluated in float32 instead of float64 (then cast once)
    scale, lo = 0.004853619781194949, -0.5872879935245888
    entry = {"name": "x", "shape": [1], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": scale, "min": lo}}
    got = decode_weight(entry, bytes([1]))[0]
    assert got == np.float32(1 * scale + lo)
    assert got != np.float32(1) * np.float32(scale) + np.float32(lo)


@pytest.mark.parametrize("truncate,extra,match", [(3, b"", "end before weight 'i'"), (0, b"\0\0", "entries use")])
def test_weights_manifest_size_errors_name_the_file(tmp_path, truncate, extra, match):
    path = _write_manifest(tmp_path, truncate, extra)
    with pytest.raises(TfjsFormatError, match=match) as e:
        read_weights_manifest(path)
    assert str(path) in str(e.value)


def test_weights_manifest_missing_shard_and_bad_quantisation(tmp_path):
    path = _write_manifest(tmp_path)
    (tmp_path / "w2.bin").unlink()
    with pytest.raises(TfjsFormatError, match="w2.bin not found"):
        read_weights_manifest(path)
    (tmp_path / "x.bin").write_bytes(b"\0" * 4)
    path.write_text(json.dumps([{"paths": ["x.bin"], "weights": [
        {"name": "z", "shape": [4], "dtype": "float32", "quantization": {"dtype": "int4"}}]}]))
    with pytest.raises(TfjsFormatError, match="unsupported storage dtype 'int4'"):
        read_weights_manifest(path)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_graph_model_nodes_in_order_and_attributes(tmp_path):
    w = np.array([[[[0.5, -1.0]]]], dtype="<f4")  # [1, 1, 1, 2] HWIO
    (tmp_path / "g.bin").write_bytes(w.tobytes())
    model = {
        "format": "graph-model",
        "modelTopology": {"node": [
            {"name": "input", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
            {"name": "m/conv/w", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}},
            {"name": "m/conv", "op": "_FusedConv2D", "input": ["input", "m/conv/w"], "attr": {
                "strides": {"list": {"i": ["1", "2", "2", "1"]}}, "padding": {"s": _b64("SAME")},
                "fused_ops": {"list": {"s": [_b64("BiasAdd"), _b64("Relu")]}}, "epsilon": {"f": 0.0},
                "use_cudnn_on_gpu": {"b": True}}},
            {"name": "Identity", "op": "Identity", "input": ["m/conv"]},
        ]},
        "weightsManifest": [{"paths": ["g.bin"], "weights": [{"name": "m/conv/w", "shape": [1, 1, 1, 2], "dtype": "float32"}]}],
        "signature": {"inputs": {"input": {"name": "input:0"}}},
    }
    (tmp_path / "model.json").write_text(json.dumps(model))
    g = read_graph_model(tmp_path / "model.json")
    assert [n.op for n in g.nodes] == ["Placeholder", "Const", "_FusedConv2D", "Identity"]
    conv = g.node("m/conv")
    assert conv.attr["strides"] == [1, 2, 2, 1] and conv.attr["padding"] == "SAME"
    assert conv.attr["fused_ops"] == ["BiasAdd", "Relu"] and conv.attr["use_cudnn_on_gpu"] is True
    assert conv.inputs == ["input", "m/conv/w"]
    assert g.consts["m/conv/w"].tolist() == w.tolist()
    # a Const without its weight is a format error naming the file
    model["modelTopology"]["node"].insert(1, {"name": "orphan", "op": "Const"})
    (tmp_path / "model.json").write_text(json.dumps(model))
    with pytest.raises(TfjsFormatError, match="orphan"):
        read_graph_model(tmp_path / "model.json")
    (tmp_path / "layers.json").write_text(json.dumps({"modelTopology": {"config": {}}, "weightsManifest": []}))
    with pytest.raises(TfjsFormatError, match="layers model"):
        read_graph_model(tmp_path / "layers.json")


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (4, 3, 2, (0, 1)),     # even size, stride 2: nothing before, one after
    (5, 3, 2, (1, 1)),
    (128, 5, 2, (1, 2)),
    (112, 3, 2, (0, 1)),
    (7, 3, 1, (1, 1)),
    (6, 1, 1, (0, 0)),
    (6, 2, 2, (0, 0)),
])
def test_same_padding_known_answers(size, kernel, stride, expected):
    # TF: out = ceil(size / stride), total = max((out - 1) * stride + kernel - size, 0), less before
    assert same_padding(size, kernel, stride) == expected


def _numpy_conv_same_stride2(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Single-channel 3x3 stride-2 correlation on a 4x4 input, padded 0 before / 1 after."""
    xp = np.pad(x, ((0, 1), (0, 1)))
    return np.array([[(xp[2 * i:2 * i + 3, 2 * j:2 * j + 3] * k).sum() for j in range(2)] for i in range(2)])


def test_same_conv_stride2_known_answer_and_the_pytorch_pitfall():
    x = np.arange(16, dtype=np.float64).reshape(4, 4)
    k = np.array([[1, 0, -1], [2, 0, -2], [0.5, 1, 0]], dtype=np.float64)
    ref = _numpy_conv_same_stride2(x, k)
    conv = SameConv2d(1, 1, 3, 2, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(hwio_to_oihw(k[:, :, None, None]).double())
        got = conv(torch.from_numpy(x)[None, None])[0, 0].numpy()
        pitfall = F.conv2d(torch.from_numpy(x)[None, None], conv.weight, stride=2, padding=1)[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert not np.allclose(pitfall, ref)  # symmetric padding=1 shifts the sampling grid


def test_depthwise_layout_and_max_pool_same():
    w = np.random.default_rng(0).normal(size=(3, 3, 2, 1))  # [kh, kw, C, 1]
    t = depthwise_to_torch(w)
    assert t.shape == (2, 1, 3, 3)
    assert float(t[1, 0, 2, 0]) == pytest.approx(w[2, 0, 1, 0])
    x = -torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # negative: zero padding would win, -inf does not
    out = max_pool_same(x, 2, 2)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0].tolist() == [[-1.0, -3.0], [-7.0, -9.0]]
