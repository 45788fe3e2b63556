"""The product default: samples rendered from the embedded procedural model."""

from __future__ import annotations

import pytest
import torch

from benchmark3dface.data.synthetic import SyntheticFaceDataset
from benchmark3dface.geometry.camera import PerspectiveCamera


@pytest.fixture(scope="module")
def default_dataset():
    try:
        return SyntheticFaceDataset({"mode": "multiview", "image_size": 64}, "val", size=2)
    except ModuleNotFoundError as e:  # pragma: no cover - the procedural model is part of the package
        pytest.skip(f"embedded procedural face model unavailable: {e}")


def test_default_facemodel_is_the_procedural_one(default_dataset):
    s = default_dataset[1]
    assert s.meta["facemodel"] == "procedural" == default_dataset.model.name
    assert s.image.shape == (3, 3, 64, 64) and s.coeffs.shape == (3, default_dataset.model.layout.size)
    cam = PerspectiveCamera.deng(64)
    lm = cam.project(s.vertices_cam[:, s.landmark_indices].double())[..., :2]
    assert (lm - s.lm68.double()).abs().max() < 0.01
    assert s.face_mask.flatten(1).float().mean(1).min() > 0.1  # the face fills the crop
    assert s.meta["split"] == "val" and s.identity >= 1_000_000


def test_gt_meshes_match_the_model_decoder(default_dataset):
    s = default_dataset[0]
    model = default_dataset.model
    geo = model.decode(s.coeffs)
    assert (geo.vertices - s.vertices).abs().max() < 1e-3
    assert (geo.world - s.vertices_cam).abs().max() < 1e-3
    assert torch.allclose(geo.landmarks3d, s.vertices_cam[:, s.landmark_indices], atol=1e-3)
