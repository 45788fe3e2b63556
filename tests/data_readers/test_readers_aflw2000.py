"""AFLW2000-3D reader on the real sample files (../shared/data/aflw2000_sample) and a fixture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
import torch

from benchmark3dface.data.readers import AFLW2000Reader, DataError, MissingFileError, get_reader
from benchmark3dface.data.readers.annotations import lm5_from_lm68


def _real(shared_data):
    return AFLW2000Reader(shared_data("aflw2000_sample"))


def test_real_files_load_with_landmarks_on_the_face(shared_data):
    r = _real(shared_data)
    assert len(r) == 8 and r.split == "test"
    for i in range(len(r)):
        s = r[i]
        _, h, w = s.image.shape
        assert (h, w) == (450, 450) and s.image.dtype == torch.float32
        assert 0.0 <= float(s.image.min()) and float(s.image.max()) <= 1.0
        lm = s.lm68
        assert lm.shape == (68, 2) and torch.isfinite(lm).all()
        # landmarks inside the image, eyes above the nose tip above the mouth
        assert (lm >= 0).all() and (lm[:, 0] < w).all() and (lm[:, 1] < h).all()
        eyes_y, nose_y, mouth_y = lm[36:48, 1].mean(), lm[30, 1], lm[48:68, 1].mean()
        assert eyes_y < nose_y < mouth_y
        # brows above eyes, chin (8) below the mouth
        assert lm[17:27, 1].mean() < eyes_y and lm[8, 1] > mouth_y
        assert s.lm5.shape == (5, 2) and torch.allclose(s.lm5, lm5_from_lm68(lm))
        assert s.lm68_3d.shape == (68, 3) and torch.allclose(s.lm68_3d[:, :2], lm)
        if abs(float(s.yaw)) < math.radians(30):  # depth: larger = nearer (nose tip vs jaw ends)
            assert s.lm68_3d[30, 2] > s.lm68_3d[[0, 16], 2].max()
        # yaw in radians, within the documented range of the sample (-55..+71 degrees)
        yaw_deg = math.degrees(float(s.yaw))
        assert -60 < yaw_deg < 75
        assert s.meta["yaw_bin"] == (0 if abs(yaw_deg) <= 30 else 1 if abs(yaw_deg) <= 60 else 2)
        assert s.meta["shape_para"].shape == (199,) and s.meta["exp_para"].shape == (29,)
        assert s.labelled and s.kind == "single"


def test_real_files_one_based_conversion(shared_data):
    """lm68 = pt3d_68[:2].T - 0.5 (1-based MATLAB pixel centres -> conventions)."""
    root = shared_data("aflw2000_sample")
    r = AFLW2000Reader(root)
    s = r[3]
    raw = scipy.io.loadmat(root / "image00516.mat")["pt3d_68"]
    assert s.sample_id.endswith("image00516")
    np.testing.assert_allclose(s.lm68.numpy(), raw[:2].T - 0.5, atol=1e-4)
    np.testing.assert_allclose(s.lm68_3d[:, 2].numpy(), raw[2], atol=1e-4)


def test_real_yaw_sign_matches_the_image(shared_data):
    """Large |yaw|: positive yaw turns the nose toward the viewer's left (smaller u)."""
    r = _real(shared_data)
    seen = 0
    for i in range(len(r)):
        s = r[i]
        yaw = float(s.yaw)
        if abs(yaw) < math.radians(30):
            continue
        box_cx = (s.lm68[:, 0].min() + s.lm68[:, 0].max()) / 2
        nose_offset = float(s.lm68[30, 0] - box_cx)
        assert np.sign(nose_offset) == -np.sign(yaw), (s.sample_id, yaw, nose_offset)
        seen += 1
    assert seen >= 3


def test_resize_keeps_landmarks_on_the_same_pixels(shared_data):
    root = shared_data("aflw2000_sample")
    full = AFLW2000Reader(root)[0]
    small = AFLW2000Reader(root, image_size=224)[0]
    assert small.image.shape == (3, 224, 224)
    s = 224 / 450
    torch.testing.assert_close(small.lm68, full.lm68 * s)
    assert small.meta["image_transform"].scale == pytest.approx(s)
    # colour at a landmark is preserved (bilinear neighbourhood average vs nearest pixel)
    u, v = full.lm68[30]
    a = full.image[:, int(v), int(u)]
    u2, v2 = small.lm68[30]
    b = small.image[:, int(v2), int(u2)]
    assert float((a - b).abs().max()) < 0.25


def test_fixture_and_registry(tmp_path, writers):
    root = writers.aflw2000(tmp_path / "AFLW2000")
    r = get_reader("aflw2000")(tmp_path)  # finds the AFLW2000/ sub-folder
    assert len(r) == 3
    s = r[1]
    np.testing.assert_allclose(s.lm68.numpy(), writers.face68(230, 237), atol=1e-4)
    assert s.meta["yaw_bin"] == 1 and float(s.yaw) == pytest.approx(-0.7)
    # pt2d: -1 entries become NaN; given ones are converted like lm68
    assert torch.isnan(s.meta["pt2d"][5:]).all()
    np.testing.assert_allclose(s.meta["pt2d"][0].numpy(), writers.face68(230, 237)[36], atol=1e-4)
    assert AFLW2000Reader(root, split="all")[0].sample_id == "aflw2000/image00000"


def test_unknown_split_and_missing_root(tmp_path):
    with pytest.raises(MissingFileError) as e:
        AFLW2000Reader(tmp_path / "nowhere")
    assert "nowhere" in str(e.value) and "3DDFA" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="imageNNNNN.jpg"):
        AFLW2000Reader(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown split"):
        AFLW2000Reader(tmp_path / "empty", split="train")


@pytest.mark.parametrize("override,reason,words", [
    ({"pt3d_68": None}, "missing_key", "pt3d_68"),
    ({"pt3d_68": np.zeros((2, 68), np.float32)}, "bad_shape", "(2, 68)"),
    ({"Pose_Para": np.full((1, 7), np.nan, np.float32)}, "non_finite", "NaN"),
    ({"Shape_Para": np.zeros((50, 1))}, "bad_shape", "Shape_Para"),
])
def test_malformed_annotation(tmp_path, writers, override, reason, words):
    writers.aflw2000(tmp_path, n=3)
    mat = tmp_path / "image00001.mat"
    writers.aflw_mat(mat, writers.face68(), **override)
    r = AFLW2000Reader(tmp_path)
    with pytest.raises(DataError) as e:
        r[1]
    assert e.value.reason == reason and "image00001.mat" in str(e.value) and words in str(e.value)
    lax = AFLW2000Reader(tmp_path, strict=False)
    s = lax[1]
    assert s.sample_id == "aflw2000/image00002" and s.meta["skipped"][0][1] == reason
    assert lax.skipped == {reason: 1}
    assert lax.skipped_files[0][0].endswith("image00001.mat")
