"""Shared, session-scoped inputs for the preprocessing tests: the real photos with their 5-point
files, one MTCNN detector (detections computed once), and Deng target points from the real ICT
mean face (../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.data.preprocess import MTCNNDetector, deng_target_points
from benchmark3dface.data.readers import ImageFolderReader


@pytest.fixture(scope="session")
def photos(shared_data):
    r = ImageFolderReader(shared_data("photos_5pt"))
    return [r[i] for i in range(len(r))]


@pytest.fixture(scope="session")
def detector():
    return MTCNNDetector(min_face_size=60)


@pytest.fixture(scope="session")
def photo_detections(photos, detector):
    return detector.detect_batch([s.image for s in photos])


@pytest.fixture(scope="session")
def ict_mean(shared_data):
    d = np.load(shared_data("ict_face_model", "ict_face_light.npz"))
    v = torch.from_numpy(d["neutral"].astype(np.float64))
    return v - v.mean(0), torch.from_numpy(d["landmarks68"].astype(np.int64))


@pytest.fixture(scope="session")
def target224(ict_mean):
    return deng_target_points(ict_mean[0], ict_mean[1], 224)
