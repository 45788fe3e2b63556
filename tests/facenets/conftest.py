"""Shared inputs for the face-network tests: skip helpers for the cached weights, the real test
images (../shared/data), and the converted networks built once per session."""

from __future__ import annotations

import pytest

from benchmark3dface.weights import available


def need_weights(*names: str) -> None:
    """Skip the calling test unless every named weight source is in the cache."""
    missing = [n for n in names if not available(n)]
    if missing:
        pytest.skip(f"converted weights {missing} are not cached (run: b3f weights fetch {' '.join(missing)})")


@pytest.fixture(scope="session")
def aflw_samples(shared_data):
    from benchmark3dface.data.readers.aflw2000 import AFLW2000Reader

    r = AFLW2000Reader(shared_data("aflw2000_sample"))
    return [r[i] for i in range(len(r))]


@pytest.fixture(scope="session")
def photos(shared_data):
    from benchmark3dface.data.readers import ImageFolderReader

    r = ImageFolderReader(shared_data("photos_5pt"))
    return [r[i] for i in range(len(r))]


@pytest.fixture(scope="session")
def face_detector():
    need_weights("blazeface")
    from benchmark3dface.facenets.landmarks import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="session")
def landmarker(face_detector):
    need_weights("faceapi_landmark68")
    from benchmark3dface.facenets.landmarks import Landmarker68

    return Landmarker68(detector=face_detector)
