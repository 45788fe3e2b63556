"""Bad input: unreadable / truncated images, colour modes and bit depths, skip accounting."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image, ImageFile

from benchmark3dface.data.readers import DataError, ImageFolderReader, MissingFileError, load_image
from benchmark3dface.data.readers.imageio import sixteen_to_eight


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_truncated_and_garbage_images(tmp_path):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("trunc.jpg", "trunc.png", "junk.jpg", "empty.png"):
        with pytest.raises(DataError) as e:
            load_image(tmp_path / name)
        assert e.value.reason == "unreadable_image" and name in str(e.value)
    # even when some other library switched Pillow to tolerate truncation
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(DataError, match="truncated"):
            load_image(tmp_path / "trunc.jpg")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    with pytest.raises(MissingFileError, match="not found"):
        load_image(tmp_path / "absent.jpg")


def test_grayscale_alpha_palette_are_converted_deliberately(tmp_path):
    g = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (24, 32, 3) and (out == g[..., None]).all()
    rgb = _rgb()
    alpha = np.zeros((24, 32), np.uint8)
    alpha[:, 16:] = 255
    alpha[0, 0] = 128
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert (out[:, 16:] == rgb[:, 16:]).all()  # opaque: unchanged
    assert (out[1:, :16] == 0).all()  # transparent: black, not the stale colour below
    np.testing.assert_array_equal(out[0, 0], np.floor(rgb[0, 0].astype(float) * 128 / 255 + 0.5).astype(np.uint8))
    Image.fromarray(np.dstack([g, alpha]), "LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert (out[:, 16:] == g[:, 16:, None]).all() and (out[1:, :16] == 0).all()
    p = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    p.save(tmp_path / "p.png")
    assert np.abs(load_image(tmp_path / "p.png").astype(int) - np.asarray(p.convert("RGB"))).max() == 0
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").shape == (24, 32, 3)


def test_16_bit_images_use_the_documented_rule(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    g16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    g16[0, :4] = [0, 257 * 100, 65535, 128]  # 128/257 rounds to 0
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    out = load_image(tmp_path / "g16.png")
    expect = np.floor(g16 / 257 + 0.5).astype(np.uint8)
    assert (out == expect[..., None]).all()
    assert out[0, :4, 0].tolist() == [0, 100, 255, 0]
    rgb16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    out = load_image(tmp_path / "rgb16.png")
    assert (out == np.floor(rgb16 / 257 + 0.5).astype(np.uint8)).all()  # not the high byte
    rgba16 = np.dstack([rgb16, np.full((20, 30), 65535, np.uint16)])
    cv2.imwrite(str(tmp_path / "rgba16.png"), rgba16[..., [2, 1, 0, 3]])
    assert (load_image(tmp_path / "rgba16.png") == np.floor(rgb16 / 257 + 0.5).astype(np.uint8)).all()
    assert sixteen_to_eight(np.array([0, 257, 65535], np.uint16)).tolist() == [0, 1, 255]


def test_float_images_are_rejected(tmp_path):
    Image.fromarray(np.random.rand(10, 10).astype(np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(DataError) as e:
        load_image(tmp_path / "f.tif")
    assert e.value.reason == "unsupported_image" and "f.tif" in str(e.value)
    Image.fromarray(np.full((4, 4), 70000, np.int32), "I").save(tmp_path / "i.tif")
    with pytest.raises(DataError, match="outside"):
        load_image(tmp_path / "i.tif")


def test_non_strict_reader_counts_and_skips(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"broken")
    Image.fromarray(_rgb()).save(tmp_path / "c.png")
    Image.fromarray(_rgb()).save(tmp_path / "d.png")
    (tmp_path / "d.txt").write_text("1 2\n")
    with pytest.raises(DataError, match="b.jpg"):
        ImageFolderReader(tmp_path)[1]
    r = ImageFolderReader(tmp_path, strict=False)
    s = r[1]
    assert s.sample_id == "image_folder/c" and s.meta["skipped"] == [(str(tmp_path / "b.jpg"), "unreadable_image")]
    assert r[3].sample_id == "image_folder/a"  # wraps around past the bad d
    assert r.skipped == {"unreadable_image": 1, "bad_shape": 1}
    assert [p.rsplit("/", 1)[-1] for p, _, _ in r.skipped_files] == ["b.jpg", "d.txt"]
    r[1]  # a known bad sample is not counted twice
    assert sum(r.skipped.values()) == 2
    none = ImageFolderReader(tmp_path, strict=False, skip="none")
    assert none[1] is None and none[0] is not None
    assert none.validate() == {"unreadable_image": 1, "bad_shape": 1}
    r.reset_skipped()
    assert r.skipped == {}


def test_all_bad_and_index_errors(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"y")
    r = ImageFolderReader(tmp_path, strict=False)
    with pytest.raises(DataError, match="none of the 2 samples"):
        r[0]
    with pytest.raises(IndexError):
        r[2]
    with pytest.raises(ValueError):
        ImageFolderReader(tmp_path, skip="later")


def test_data_error_pickles_with_its_fields():
    e = pickle.loads(pickle.dumps(DataError("/x/y.mat", "wrong shape", "bad_shape")))
    assert (e.path, e.problem, e.reason) == ("/x/y.mat", "wrong shape", "bad_shape")
    m = pickle.loads(pickle.dumps(MissingFileError("/x/z", "data not found", hint="get it at U")))
    assert isinstance(m, FileNotFoundError) and "get it at U" in str(m) and m.reason == "missing_file"
