"""Generic image-folder reader: the real photos of ../shared/data/photos_5pt (5-point .txt files)
and fixtures with iBUG .pts files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.data.readers import DataError, ImageFolderReader, MissingFileError, get_reader
from benchmark3dface.data.readers.annotations import read_pts


def _pts_text(pts: np.ndarray) -> str:
    return "version: 1\nn_points: 68\n{\n" + "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts) + "\n}\n"


def test_real_photos_with_5_points(shared_data):
    root = shared_data("photos_5pt")
    r = get_reader("image_folder")(root)
    assert len(r) == 10
    for i in range(len(r)):
        s = r[i]
        name = s.meta["path"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        raw = np.loadtxt(root / f"{name}.txt")
        np.testing.assert_allclose(s.lm5.numpy(), raw, atol=1e-4)  # continuous coords, no shift
        _, h, w = s.image.shape
        assert (s.lm5[:, 0] > 0).all() and (s.lm5[:, 0] < w).all() and (s.lm5[:, 1] < h).all()
        assert s.lm5[0, 0] < s.lm5[1, 0]  # viewer's-left eye first
        assert s.lm5[:2, 1].max() < s.lm5[3:, 1].min()  # eyes above mouth corners
        assert not s.labelled and s.lm68 is None


def test_pts_and_68_point_txt(tmp_path, writers):
    lm = writers.face68()
    writers.save_image(tmp_path / "a.png", writers.image(450, 450, 0))
    (tmp_path / "a.pts").write_text(_pts_text(lm + 0.5))  # stored 1-based
    writers.save_image(tmp_path / "sub" / "b.jpg", writers.image(450, 450, 1), quality=95)
    np.savetxt(tmp_path / "sub" / "b.txt", lm)
    writers.save_image(tmp_path / "c.jpg", writers.image(300, 200, 2), quality=95)  # no landmarks
    writers.save_image(tmp_path / ".hidden" / "d.jpg", writers.image(30, 20, 2))
    r = ImageFolderReader(tmp_path)
    assert [r[i].sample_id for i in range(len(r))] == ["image_folder/a", "image_folder/c", "image_folder/sub/b"]
    a, c, b = r[0], r[1], r[2]
    np.testing.assert_allclose(a.lm68.numpy(), lm, atol=1e-3)
    np.testing.assert_allclose(b.lm68.numpy(), lm, atol=1e-3)
    np.testing.assert_allclose(a.lm5[2].numpy(), lm[30], atol=1e-3)
    assert c.lm5 is None and c.lm68 is None
    strict_lm = ImageFolderReader(tmp_path, require_landmarks=True)
    with pytest.raises(DataError) as e:
        strict_lm[1]
    assert e.value.reason == "missing_file" and "c.txt" in str(e.value)
    flat = ImageFolderReader(tmp_path, recursive=False)
    assert len(flat) == 2


def test_bad_landmark_files(tmp_path, writers):
    writers.save_image(tmp_path / "a.png", writers.image(40, 40, 0))
    (tmp_path / "a.txt").write_text("1 2\n3 4\n5 6\n")
    with pytest.raises(DataError) as e:
        ImageFolderReader(tmp_path)[0]
    assert e.value.reason == "bad_shape" and "a.txt" in str(e.value)
    (tmp_path / "a.txt").write_text("1 2\n3 nan\n5 6\n7 8\n9 10\n")
    with pytest.raises(DataError, match="NaN"):
        ImageFolderReader(tmp_path)[0]
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.pts").write_text(_pts_text(np.zeros((68, 2))).replace("n_points: 68", "n_points: 70"))
    with pytest.raises(DataError, match="n_points says 70"):
        ImageFolderReader(tmp_path)[0]
    (tmp_path / "a.pts").write_text("garbage")
    with pytest.raises(DataError, match="malformed .pts"):
        read_pts(tmp_path / "a.pts")


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(MissingFileError):
        ImageFolderReader(tmp_path / "absent")
    with pytest.raises(MissingFileError, match="images"):
        ImageFolderReader(tmp_path)


def test_exif_orientation(tmp_path, writers):
    from PIL import Image

    arr = writers.image(40, 60, 3)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "p.jpg", exif=exif, quality=95)
    up = ImageFolderReader(tmp_path)[0]
    raw = ImageFolderReader(tmp_path, exif_transpose=False)[0]
    assert raw.image.shape == (3, 40, 60) and up.image.shape == (3, 60, 40)
    assert torch.allclose(up.image, torch.rot90(raw.image, k=-1, dims=(1, 2)), atol=0.08)
