"""Weak-perspective decoding: oracle coefficients + the engine's camera reproduce the synthetic
engine's GT landmarks (and its depth convention), next to the perspective path."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.data.synthetic import SyntheticFaceDataset
from benchmark3dface.data.synthetic.testing import tiny_facemodel
from benchmark3dface.geometry.camera import (PerspectiveCamera, WeakPerspectiveCamera, camera_kind,
                                             perspective_from_dict)


@pytest.fixture(scope="module")
def model():
    return tiny_facemodel()


def _weak_inputs(sample):
    cam = sample.camera
    return (WeakPerspectiveCamera(cam["width"], cam["height"]), torch.tensor(cam["scale"]),
            torch.tensor(cam["translation"]))


@pytest.mark.parametrize("mode", ["single", "multiview", "set"])
def test_weak_decode_reproduces_engine_landmarks(model, mode):
    ds = SyntheticFaceDataset({"preset": "richardson", "mode": mode, "image_size": 80, "set_size": 2},
                              "test", 3, 0, model)
    for i in range(3):
        s = ds[i]
        cam, scale, t2 = _weak_inputs(s)
        coeffs = s.coeffs.reshape(-1, model.layout.size)
        geo = model.decode(coeffs, cam, scale=scale, translation2d=t2)
        lm = s.lm68.reshape(-1, 68, 2)
        assert (geo.landmarks2d - lm).abs().max() < 1e-3
        # per-vertex depth in Sample.depth's convention: -z_world (mm); lm68_3d holds s * z_world
        z = -geo.projected[:, model.landmarks68, 2] * scale[:, None]
        assert (z - s.lm68_3d.reshape(-1, 68, 3)[..., 2]).abs().max() < 1e-3
        assert torch.equal(geo.translation, torch.zeros_like(geo.translation))
        # the model-frame mesh is the GT mesh
        assert (geo.vertices - s.vertices.reshape(geo.vertices.shape)).abs().max() < 1e-3


def test_perspective_decode_reproduces_engine_landmarks(model):
    ds = SyntheticFaceDataset({"image_size": 96}, "test", 3, 0, model)
    for i in range(3):
        s = ds[i]
        assert camera_kind(s.camera) == "perspective"
        cam = perspective_from_dict(s.camera, s.camera["width"], s.camera["height"])
        geo = model.decode(s.coeffs[None], cam)
        assert (geo.landmarks2d[0] - s.lm68).abs().max() < 1e-3


def test_weak_decode_needs_a_scale_and_camera_helpers(model):
    coeffs = torch.zeros(1, model.layout.size)
    with pytest.raises(ValueError, match="scale"):
        model.decode(coeffs, WeakPerspectiveCamera(64, 64))
    # zero pose, scale 2, shift (3, -1): u = 32 + 2 x + 3, v = 32 - (2 y - 1), depth -z
    geo = model.decode(coeffs, WeakPerspectiveCamera(64, 64), scale=torch.tensor([2.0]),
                       translation2d=torch.tensor([[3.0, -1.0]]))
    v = model.mean_shape
    expected = torch.stack([32 + 2 * v[:, 0] + 3, 32 - (2 * v[:, 1] - 1), -v[:, 2]], -1)
    assert torch.allclose(geo.projected[0], expected, atol=1e-4)
    assert WeakPerspectiveCamera(64, 64, principal=(10.0, 20.0)).cx == 10.0
    assert camera_kind({"type": "weak_perspective"}) == camera_kind({"kind": "weak"}) == "weak"
    assert camera_kind({}) is None and camera_kind({"kind": "fisheye"}) is None
    cam = perspective_from_dict({"kind": "perspective"}, 64, 48, fallback={"focal": 290.0, "cx": 30.0, "cy": 20.0})
    assert cam == PerspectiveCamera(290.0, 30.0, 20.0, 1000.0, 64, 48)
    with pytest.raises(ValueError, match="focal"):
        perspective_from_dict({}, 64, 64)


def test_weak_decode_on_the_default_model():
    """The same known answer on the embedded procedural model (the benchmark's default), at
    Richardson's 200 px weak-perspective setting."""
    ds = SyntheticFaceDataset({"preset": "richardson", "mode": "multiview"}, "test", 1, 0)
    s, m = ds[0], ds.model
    cam, scale, t2 = _weak_inputs(s)
    geo = m.decode(s.coeffs, cam, scale=scale, translation2d=t2)
    assert (geo.landmarks2d - s.lm68).abs().max() < 1e-3
