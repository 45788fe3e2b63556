"""Registry, resizing, landmark helpers and annotation parsers shared by the readers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark3dface.data.readers import (READERS, DataError, FaceDatasetReader, get_reader, lm5_from_lm68,
                                          mirror_lm68, register_reader, resize_sample, yaw_bin)
from benchmark3dface.data.readers.annotations import check_array, load_mat, read_landmarks3d, read_points_txt
from benchmark3dface.data.sample import Sample


def test_registry_names_and_lookup():
    assert set(READERS) >= {"aflw2000", "300w_lp", "micc", "celeba", "now", "image_folder"}
    assert get_reader("300W-LP") is READERS["300w_lp"]
    with pytest.raises(KeyError, match="available"):
        get_reader("imagenet")
    for name, cls in READERS.items():
        assert issubclass(cls, FaceDatasetReader) and cls.name == name and cls.source_hint


def test_register_a_new_reader(tmp_path):
    @register_reader("toy_for_test")
    class Toy(FaceDatasetReader):
        splits = ("all",)

        def _index(self):
            return [0, 1]

        def _load(self, item, index):
            return Sample(sample_id=f"toy/{item}", image=torch.zeros(3, 4, 4))

    try:
        r = get_reader("toy_for_test")(tmp_path)
        assert len(r) == 2 and r[1].meta["dataset"] == "toy_for_test" and r[1].meta["index"] == 1
        with pytest.raises(ValueError, match="already registered"):
            register_reader("toy_for_test")(type("Other", (Toy,), {}))
    finally:
        READERS.pop("toy_for_test", None)


def test_resize_moves_content_with_landmarks():
    """A bright dot at a landmark stays under the landmark after the aspect-preserving resize."""
    h, w = 120, 200
    u0, v0 = 137.3, 41.8
    y, x = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    blob = torch.exp(-((x - u0) ** 2 + (y - v0) ** 2) / (2 * 4.0 ** 2))
    s = Sample(image=blob.expand(3, h, w).clone(), lm5=torch.tensor([[u0, v0]] * 5),
               lm68_3d=torch.tensor([[u0, v0, 10.0]] * 68),
               face_mask=(blob > 0.5), skin_mask=blob.clone())
    out = resize_sample(s, 64)
    assert out.image.shape == (3, 64, 64) and out.face_mask.dtype == torch.bool
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    wgt = out.image[0].clamp(min=0)
    cu, cv = float((wgt * xx).sum() / wgt.sum()), float((wgt * yy).sum() / wgt.sum())
    assert abs(cu - float(out.lm5[0, 0])) < 0.1 and abs(cv - float(out.lm5[0, 1])) < 0.1
    k = 64 / 200
    assert float(out.lm5[0, 1]) == pytest.approx(v0 * k + (64 - h * k) / 2)
    assert float(out.lm68_3d[0, 2]) == pytest.approx(10.0 * k)
    m = out.face_mask.float()
    assert abs(float((m * xx).sum() / m.sum()) - cu) < 0.6
    assert out.meta["orig_size"] == (h, w)
    # black padding above and below the resized content
    assert float(out.image[:, :5].max()) < 1e-3 and float(out.image[:, -5:].max()) < 1e-3


def test_lm5_mirror_and_yaw_bins():
    lm = torch.randn(2, 68, 3)
    five = lm5_from_lm68(lm)
    assert five.shape == (2, 5, 3)
    torch.testing.assert_close(five[:, 0], (lm[:, 36] + lm[:, 39]) / 2)
    torch.testing.assert_close(five[:, 4], lm[:, 54])
    with pytest.raises(ValueError):
        lm5_from_lm68(torch.zeros(5, 2))
    lm2 = torch.rand(68, 2) * 100
    back = mirror_lm68(mirror_lm68(lm2, 100.0), 100.0)
    torch.testing.assert_close(back, lm2)
    assert float(mirror_lm68(lm2, 100.0)[45, 0]) == pytest.approx(100.0 - float(lm2[36, 0]))
    degs = [0, 29.9, 30.0, 30.1, -45, 60, -60.5, 95, -170]
    want = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [yaw_bin(math.radians(d)) for d in degs] == want
    assert yaw_bin(torch.tensor([math.radians(d) for d in degs])).tolist() == want


def test_check_array_and_mat_errors(tmp_path):
    with pytest.raises(DataError, match=r"expected \(68, 2\)"):
        check_array(np.zeros((2, 68)), "f.mat", "pts", [(68, 2)])
    with pytest.raises(DataError, match="not numeric"):
        check_array({"a": 1}, "f.mat", "pts", [(68, 2)])
    assert check_array(np.zeros((3, 5)), "f", "x", [(None, 5)]).shape == (3, 5)
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file garbage" + b"\0" * 200)
    with pytest.raises(DataError) as e:
        load_mat(tmp_path / "bad.mat")
    assert e.value.reason == "unreadable_annotation" and "bad.mat" in str(e.value)
    (tmp_path / "v73.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon" + b" " * 60
                                       + b"\x00" * 8 + b"\x00\x02IM" + b"\0" * 400)
    with pytest.raises(DataError) as e:
        load_mat(tmp_path / "v73.mat")
    assert e.value.reason == "unreadable_annotation"


def test_point_file_parsers(tmp_path):
    (tmp_path / "p.txt").write_text("# five points\n1, 2\n3 4\n5\t6\n7 8\n9 10\n")
    np.testing.assert_allclose(read_points_txt(tmp_path / "p.txt", (5,)), np.arange(1, 11).reshape(5, 2))
    with pytest.raises(DataError, match="non-numeric"):
        (tmp_path / "q.txt").write_text("a b\n")
        read_points_txt(tmp_path / "q.txt")
    lm = np.arange(21.0).reshape(7, 3)
    np.save(tmp_path / "l.npy", lm)
    np.testing.assert_allclose(read_landmarks3d(tmp_path / "l.npy", 7), lm)
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot read .npy"):
        read_landmarks3d(tmp_path / "o.npy", 7)
    with pytest.raises(DataError, match="unsupported landmark"):
        read_landmarks3d(tmp_path / "p.json", 7)
