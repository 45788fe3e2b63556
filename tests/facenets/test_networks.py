"""The torch modules, the face-api converter's layouts and BlazeFace's decoding, without the real
weights (random or hand-made values, references computed here with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.facenets.faceapi import FaceLandmark68Net, state_dict_from_weights
from benchmark3dface.facenets.mediapipe import (BlazeFaceNet, FaceMeshNet, blazeface_anchors, box_iou,
                                                decode_blazeface, weighted_nms)


def _faceapi_tf_weights(rng) -> dict[str, np.ndarray]:
    """Random weights under face-api's tensor names, in TF layouts."""
    w: dict[str, np.ndarray] = {}
    cin = 3
    for i, c in enumerate((32, 64, 128, 256)):
        for j in range(4):
            p = f"dense{i}/conv{j}"
            if i == 0 and j == 0:
                w[f"{p}/filters"] = rng.normal(size=(3, 3, cin, c)).astype(np.float32)
            else:
                ci = cin if j == 0 else c
                w[f"{p}/depthwise_filter"] = rng.normal(size=(3, 3, ci, 1)).astype(np.float32)
                w[f"{p}/pointwise_filter"] = rng.normal(size=(1, 1, ci, c)).astype(np.float32) * 0.1
            w[f"{p}/bias"] = rng.normal(size=(c,)).astype(np.float32)
        cin = c
    w["fc/weights"] = rng.normal(size=(256, 136)).astype(np.float32)
    w["fc/bias"] = rng.normal(size=(136,)).astype(np.float32)
    return w


def test_faceapi_converter_layouts_against_numpy():
    rng = np.random.default_rng(0)
    tf_w = _faceapi_tf_weights(rng)
    net = FaceLandmark68Net()
    net.load_state_dict(state_dict_from_weights(tf_w))
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    # first conv: TF "SAME" stride 2 on 8x8 pads 0 before, 1 after; HWIO filter, NCHW input
    xp = np.pad(x[0], ((0, 0), (0, 1), (0, 1)))
    f, b = tf_w["dense0/conv0/filters"], tf_w["dense0/conv0/bias"]
    ref = np.stack([np.array([[np.einsum("chw,hwc->", xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3], f[:, :, :, o])
                               for j in range(4)] for i in range(4)]) + b[o] for o in range(32)])
    with torch.no_grad():
        got = net.dense0.conv0(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # separable conv: depthwise [3,3,C,1] then pointwise [1,1,C,O] + bias
    y = rng.normal(size=(1, 32, 4, 4)).astype(np.float32)
    yp = np.pad(y[0], ((0, 0), (1, 1), (1, 1)))
    dw = tf_w["dense0/conv1/depthwise_filter"][:, :, :, 0]
    d = np.stack([[[(yp[c, i:i + 3, j:j + 3] * dw[:, :, c]).sum() for j in range(4)] for i in range(4)]
                  for c in range(32)])
    ref = np.einsum("chw,co->ohw", d, tf_w["dense0/conv1/pointwise_filter"][0, 0]) + tf_w["dense0/conv1/bias"][:, None, None]
    with torch.no_grad():
        got = net.dense0.conv1(torch.from_numpy(y))[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # fully connected: TF dense weights are (in, out)
    z = rng.normal(size=(2, 256)).astype(np.float32)
    with torch.no_grad():
        got = net.fc(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(got, z @ tf_w["fc/weights"] + tf_w["fc/bias"], rtol=1e-4, atol=1e-3)


def test_faceapi_converter_rejects_incomplete_weights():
    from benchmark3dface.weights import ConversionError

    w = _faceapi_tf_weights(np.random.default_rng(1))
    del w["dense2/conv3/bias"]
    with pytest.raises(ConversionError, match="dense2/conv3/bias"):
        state_dict_from_weights(w)


def test_module_output_shapes():
    with torch.no_grad():
        assert FaceLandmark68Net()(torch.rand(2, 3, 112, 112)).shape == (2, 68, 2)
        assert BlazeFaceNet()(torch.rand(1, 3, 128, 128) * 2 - 1).shape == (1, 896, 17)
        out = FaceMeshNet()(torch.rand(1, 3, 192, 192))
    assert out["mesh"].shape == (1, 468, 3) and out["contours"].shape == (1, 133, 2) and out["face_flag"].shape == (1,)


def test_blazeface_anchor_layout():
    a = blazeface_anchors(128)
    assert a.shape == (896, 2)
    # 16x16 cells of stride 8, two anchors each, row-major; then 8x8 of stride 16, six each
    assert a[0].tolist() == a[1].tolist() == [4.0, 4.0]
    assert a[2].tolist() == [12.0, 4.0]
    assert a[32].tolist() == [4.0, 12.0]
    assert a[511].tolist() == [124.0, 124.0]
    assert all(a[k].tolist() == [8.0, 8.0] for k in range(512, 518))
    assert a[518].tolist() == [24.0, 8.0]
    assert a[-1].tolist() == [120.0, 120.0]


def test_decode_blazeface_by_hand():
    anchors = torch.tensor([[20.0, 30.0]])
    raw = torch.zeros(1, 17)
    raw[0, 1:5] = torch.tensor([1.0, 2.0, 10.0, 20.0])
    raw[0, 5:7] = torch.tensor([-3.0, 4.0])
    scores, boxes, kp = decode_blazeface(raw, anchors)
    assert float(scores[0]) == pytest.approx(0.5)
    assert boxes[0].tolist() == [16.0, 22.0, 26.0, 42.0]  # centre (21, 32), size 10 x 20
    assert kp.shape == (1, 6, 2) and kp[0, 0].tolist() == [17.0, 34.0] and kp[0, 1].tolist() == [20.0, 30.0]


def test_box_iou_and_weighted_nms_by_hand():
    assert float(box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3]]))[0, 0]) == pytest.approx(1 / 7)
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [50.0, 50, 60, 60], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.6, 0.7, 0.3])
    kps = boxes[:, None, :2].repeat(1, 6, 1)
    out = weighted_nms(scores, boxes, kps, iou_threshold=0.3, score_threshold=0.5)
    assert [round(s, 6) for s, _, _ in out] == [0.9, 0.7]
    merged = (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5  # the 0.3 box is below the score threshold
    assert torch.allclose(out[0][1], merged) and torch.allclose(out[0][2][0], merged[:2])
    assert torch.equal(out[1][1], boxes[2])
    assert weighted_nms(scores, boxes, kps, score_threshold=0.95) == []
