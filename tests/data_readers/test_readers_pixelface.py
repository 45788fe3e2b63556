"""Pixel-Face-style reader: fixtures written in the layout of datasets/pixelface.md (three view
images + an OBJ scan per subject/expression), splits, and clear errors for a missing view or scan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark3dface.data.readers import MissingFileError, PixelFaceReader, get_reader
from benchmark3dface.data.readers.errors import DataError

SCAN_V = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 20.0, 5.0], [10.0, 20.0, 5.0]])
SCAN_F = np.array([[1, 2, 3], [2, 4, 3]])  # OBJ, 1-based


def write_sample(folder, colors=((255, 0, 0), (0, 255, 0), (0, 0, 255)), size=(12, 10), views=("left", "front", "right"),
                 scan=True):
    folder.mkdir(parents=True, exist_ok=True)
    for view, col in zip(("left", "front", "right"), colors):
        if view in views:
            Image.new("RGB", size, col).save(folder / f"{view}.png")
    if scan:
        lines = [f"v {x} {y} {z}" for x, y, z in SCAN_V] + [f"f {a} {b} {c}" for a, b, c in SCAN_F]
        (folder / "mesh.obj").write_text("\n".join(lines) + "\n")


@pytest.fixture
def root(tmp_path):
    for s in range(5):
        for e in ("neutral", "smile"):
            write_sample(tmp_path / f"S{s:03d}" / e)
    return tmp_path


def test_reads_triplets_and_scans_in_view_order(root):
    ds = PixelFaceReader(root, split="all")
    assert len(ds) == 10
    s = ds[0]
    assert s.kind == "multiview" and s.sample_id == "pixelface/S000/neutral"
    assert s.image.shape == (3, 3, 10, 12)
    # left red, front green, right blue
    assert torch.allclose(s.image[:, :, 0, 0], torch.eye(3))
    assert torch.allclose(s.scan_vertices, torch.tensor(SCAN_V, dtype=torch.float32))
    assert torch.equal(s.scan_triangles, torch.tensor(SCAN_F - 1))
    assert s.meta["subject"] == "S000" and s.meta["expression"] == "neutral" and s.identity == 0
    assert get_reader("pixelface") is PixelFaceReader


def test_default_split_is_80_20_by_subject_and_split_files_override(root):
    train, test = PixelFaceReader(root, split="train"), PixelFaceReader(root, split="test")
    assert len(train) == 8 and len(test) == 2
    assert {i.subject for i in test.items} == {"S004"}
    (root / "splits").mkdir()
    (root / "splits" / "test.txt").write_text("S001\nS003\n")
    assert {i.subject for i in PixelFaceReader(root, split="test").items} == {"S001", "S003"}
    (root / "splits" / "test.txt").write_text("S001\nS999\n")
    with pytest.raises(DataError, match="S999"):
        PixelFaceReader(root, split="test")


def test_missing_view_is_a_clear_error_naming_the_file(tmp_path):
    write_sample(tmp_path / "S000" / "neutral", views=("left", "front"))
    ds = PixelFaceReader(tmp_path, split="all")
    with pytest.raises(MissingFileError, match="right view image of S000/neutral") as e:
        ds[0]
    assert "right.jpg" in str(e.value)
    # non-strict: the sample is skipped and counted
    lax = PixelFaceReader(tmp_path, split="all", strict=False, skip="none")
    assert lax[0] is None and sum(lax.skipped.values()) == 1


def test_missing_scan_is_a_clear_error_and_load_scan_false_reads_images_only(tmp_path):
    write_sample(tmp_path / "S000" / "neutral", scan=False)
    with pytest.raises(MissingFileError, match="scan of S000/neutral"):
        PixelFaceReader(tmp_path, split="all")[0]
    s = PixelFaceReader(tmp_path, split="all", load_scan=False)[0]
    assert s.scan_vertices is None and s.image.shape[0] == 3


def test_views_of_different_sizes_and_empty_root(tmp_path):
    folder = tmp_path / "S000" / "neutral"
    write_sample(folder)
    Image.new("RGB", (8, 8), (0, 0, 0)).save(folder / "front.png")
    with pytest.raises(DataError, match="differ in size"):
        PixelFaceReader(tmp_path, split="all")[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingFileError):
        PixelFaceReader(empty, split="all")


def test_resize_keeps_the_view_axis(root):
    s = PixelFaceReader(root, split="all", image_size=16)[0]
    assert s.image.shape == (3, 3, 16, 16)
