"""dlib .dat reader and converter on synthetic files written in the true format (no real
weights needed): integers, floats, strings, bools, tensors, a tiny layer list, and a full-size
network of random parameters whose layout mapping is checked value by value."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the writer beside this file
import dat_writer as W  # noqa: E402

from benchmark3dface.facenets.dlib_resnet import (DAT_FILE, DatFormatError, DatReader, DlibResNet,  # noqa: E402
                                                   _add_zero_padded, convert_dlib_resnet, parse_dlib_dat,
                                                   read_dlib_dat)


# ----------------------------------------------------------------------------- primitives
@pytest.mark.parametrize("value", [0, 1, 2, 127, 255, 256, 65535, 1 << 40, -1, -300, -(1 << 33)])
def test_integers_round_trip(value):
    r = DatReader(W.w_int(value))
    assert r.int() == value and r.at_end


def test_integer_known_bytes():
    # control byte 0x82 = negative, two bytes follow; 0x0102 little-endian = 513
    assert DatReader(bytes([0x82, 0x01, 0x02])).int() == -513
    assert DatReader(bytes([0x00])).int() == 0


def test_floats_are_mantissa_times_two_to_the_exponent():
    r = DatReader(W.w_float(10737418, -28) + W.w_float(3, 4) + W.w_float(-5, -1) + W.w_float(0, 0))
    assert r.float() == pytest.approx(10737418 / 2 ** 28)  # 0.04 as dlib stores it
    assert r.float() == 48.0
    assert r.float() == -2.5
    assert r.float() == 0.0
    assert math.isinf(DatReader(W.w_float(0, 32000)).float())


def test_strings_bools_and_tensors():
    arr = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 7.25
    data = W.w_str("relu_") + W.w_bool(True) + W.w_bool(False) + W.w_tensor(arr.ravel(), (1, 2, 3, 4)) + W.w_tensor(None)
    r = DatReader(data)
    assert r.string() == "relu_"
    assert r.bool() is True and r.bool() is False
    got = r.tensor()
    assert got.shape == (1, 2, 3, 4) and np.array_equal(got, arr)
    assert r.tensor().shape == (0, 0, 0, 0)
    assert r.at_end


def test_truncated_input_names_the_offset():
    r = DatReader(W.w_tensor(np.ones(10, np.float32))[:-3], "x.dat")
    with pytest.raises(DatFormatError, match=r"x\.dat: offset \d+: unexpected end of file"):
        r.tensor()


def test_bad_bool_and_tensor_version_are_errors():
    with pytest.raises(DatFormatError, match="bad bool"):
        DatReader(b"x").bool()
    with pytest.raises(DatFormatError, match="tensor version 5"):
        DatReader(W.w_int(5)).tensor()


# ----------------------------------------------------------------------------- a tiny layer list
def tiny_file() -> tuple[bytes, dict]:
    rng = np.random.default_rng(0)
    conv = rng.normal(size=2 * 3 * 3 * 3 + 2).astype(np.float32)
    aff = rng.normal(size=4).astype(np.float32)
    fcw = rng.normal(size=2 * 5).astype(np.float32)
    data = W.header(4) + W.layer(W.con(conv, 2, 3, 3, 1, 1), first=True) + W.layer(W.affine(aff, 2))
    data += W.layer(W.w_str("relu_")) + W.layer(W.pool("max_pool", 3, 2)) + W.layer(W.w_str("add_prev_"))
    data += W.layer(W.pool("avg_pool", 0, 1)) + W.layer(W.fc(fcw, 5, 2))
    return data, {"conv": conv, "affine": aff, "fc": fcw}


def test_tiny_network_is_parsed_layer_by_layer():
    data, params = tiny_file()
    net = parse_dlib_dat(data, "tiny.dat")
    assert net.loss == "loss_metric_2"
    assert net.loss_fields == pytest.approx((0.04, 0.6), abs=1e-7)
    assert net.wrapper_versions[-1] == 3 and len(net.wrapper_versions) == 4
    assert net.mean_rgb == pytest.approx((30722 / 256, 29952 / 256, 26700 / 256))
    assert net.input_size == (150, 150)
    assert [layer.kind for layer in net.layers] == ["con", "affine", "relu", "max_pool", "add_prev", "avg_pool", "fc"]
    con = net.layers[0]
    assert con.fields["filters_shape"] == (2, 3, 3, 3) and con.fields["stride"] == (1, 1)
    assert con.fields["padding"] == (1, 1) and con.fields["sample_expansion_factor"] == 1
    assert np.array_equal(con.params, params["conv"])
    assert np.array_equal(net.layers[1].params, params["affine"])
    assert net.layers[3].fields["nr"] == 3 and net.layers[3].fields["stride"] == (2, 2)
    assert net.layers[6].fields["num_outputs"] == 5 and net.layers[6].fields["num_inputs"] == 2


def test_a_file_without_the_input_layer_is_rejected(tmp_path):
    p = tmp_path / "bad.dat"
    p.write_bytes(W.w_int(1) + W.w_str("loss_metric_2") + W.w_float(1, 0) * 2 + W.w_int(2) + W.w_str("input_rgb_image"))
    with pytest.raises(DatFormatError, match="bad.dat"):
        read_dlib_dat(p)


def test_unknown_layer_type_is_named():
    data = W.header(2) + W.layer(W.w_str("bn_con2"))
    with pytest.raises(DatFormatError, match="unsupported layer type 'bn_con2'"):
        parse_dlib_dat(data)


# ----------------------------------------------------------------------------- the full architecture
#: from the architecture description (FACENETS.md): (channels, downsampling) per residual block
ARCH = [(32, 0)] * 3 + [(64, 1)] + [(64, 0)] * 3 + [(128, 1)] + [(128, 0)] * 2 + [(256, 1)] + [(256, 0)] * 2 + [(256, 1)]


def full_file(rng, strided_block: int | None = None) -> tuple[bytes, dict]:
    """A file with dlib's layer sequence and random parameters; returns it and the raw arrays.
    ``strided_block``: give that block's first conv stride 2 (a file that is not dlib's net)."""
    raw: dict[str, np.ndarray] = {}
    p = rng.normal(size=32 * 3 * 49 + 32).astype(np.float32)
    raw["conv1"] = p
    a = rng.normal(size=64).astype(np.float32)
    raw["bn1"] = a
    body = W.layer(W.con(p, 32, 3, 7, 2, 0), first=True) + W.layer(W.affine(a, 32))
    body += W.layer(W.w_str("relu_")) + W.layer(W.pool("max_pool", 3, 2))
    cin = 32
    for i, (c, down) in enumerate(ARCH):
        p1 = rng.normal(size=c * cin * 9 + c).astype(np.float32)
        p2 = rng.normal(size=c * c * 9 + c).astype(np.float32)
        a1, a2 = rng.normal(size=2 * c).astype(np.float32), rng.normal(size=2 * c).astype(np.float32)
        raw[f"b{i}"] = (p1, a1, p2, a2)
        stride = 2 if down or i == strided_block else 1
        body += W.layer(W.con(p1, c, cin, 3, stride, 0 if down else 1)) + W.layer(W.affine(a1, c))
        body += W.layer(W.w_str("relu_")) + W.layer(W.con(p2, c, c, 3, 1, 1)) + W.layer(W.affine(a2, c))
        if down:
            body += W.layer(W.pool("avg_pool", 2, 2))
        body += W.layer(W.w_str("add_prev_")) + W.layer(W.w_str("relu_"))
        cin = c
    f = rng.normal(size=256 * 128).astype(np.float32)
    raw["fc"] = f
    body += W.layer(W.pool("avg_pool", 0, 1)) + W.layer(W.fc(f, 128, 256))
    return W.header(150) + body, raw


def test_converter_maps_every_parameter_to_its_place(tmp_path):
    data, raw = full_file(np.random.default_rng(1))
    path = tmp_path / "net.dat"
    path.write_bytes(data)
    state = convert_dlib_resnet({DAT_FILE: path})
    # known answers from the layout: filters OIHW then bias; gamma then beta; fc stored (in, out)
    assert torch.equal(state["conv1.weight"][5, 2, 6, 1], torch.tensor(raw["conv1"][((5 * 3 + 2) * 7 + 6) * 7 + 1]))
    assert torch.equal(state["conv1.bias"], torch.from_numpy(raw["conv1"][32 * 3 * 49:]))
    assert torch.equal(state["bn1.gamma"], torch.from_numpy(raw["bn1"][:32]))
    assert torch.equal(state["bn1.beta"], torch.from_numpy(raw["bn1"][32:]))
    p1, a1, p2, a2 = raw["b3"]  # first 64-channel (downsampling) block, input 32 channels
    assert torch.equal(state["blocks.3.conv1.weight"][63, 31, 2, 0], torch.tensor(p1[((63 * 32 + 31) * 3 + 2) * 3]))
    assert torch.equal(state["blocks.3.bn2.beta"], torch.from_numpy(a2[64:]))
    assert torch.equal(state["fc.weight"][7, 200], torch.tensor(raw["fc"][200 * 128 + 7]))
    assert state["mean_rgb"].tolist() == pytest.approx([30722 / 256, 29952 / 256, 26700 / 256])
    model = DlibResNet()
    model.load_state_dict(state, strict=True)
    assert sum(m.weight.dim() == 4 for m in model.modules() if isinstance(m, torch.nn.Conv2d)) == 29


def test_converter_rejects_a_wrong_stride(tmp_path):
    bad, _ = full_file(np.random.default_rng(2), strided_block=0)
    path = tmp_path / "strided.dat"
    path.write_bytes(bad)
    with pytest.raises(DatFormatError, match=r"strided\.dat: layer 4: convolution stride \(2, 2\) padding \(1, 1\), expected \(1, 1\)"):
        convert_dlib_resnet({DAT_FILE: path})


def test_zero_padded_add_pads_at_the_end():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 3, 4, 4), 10.0)
    out = _add_zero_padded(a, b)
    expect = np.full((1, 3, 4, 4), 10.0)
    expect[:, :2, :3, :3] += 1.0
    assert out.shape == (1, 3, 4, 4) and np.array_equal(out.numpy(), expect)


def test_resnet_shapes_on_a_150_px_chip():
    model = DlibResNet().eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 150, 150))
    assert out.shape == (2, 128)
    assert sum(p.numel() for p in model.parameters()) == 5_614_592  # + 3 mean values = 5,614,595
