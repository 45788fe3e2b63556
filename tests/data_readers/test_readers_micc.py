"""MICC Florence reader: scans (obj via open3d, VRML via the built-in parser), videos decoded
with OpenCV and frame folders, stride selection, set mode, unit check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark3dface.data.readers import DataError, MICCFlorenceReader, MissingFileError
from benchmark3dface.data.readers.mesh import load_mesh, read_vrml


def _frame_id(img: torch.Tensor) -> int:
    return int(round(float(img.mean()) * 255 / 10))


@pytest.fixture
def micc(tmp_path, writers):
    root = tmp_path / "Florence"
    v1, t1 = writers.obj(root / "subject_01" / "Model" / "frontal1" / "obj" / "110920150452.obj")
    writers.obj(root / "subject_01" / "Model" / "frontal2" / "obj" / "other.obj", scale=1.1)
    writers.video(root / "subject_01" / "Video" / "Indoor-Cooperative.mjpg", 25)
    # subject 2: VRML scan and pre-extracted frames
    writers.wrl(root / "subject_02" / "Model" / "frontal1" / "vrml" / "scan.wrl", v1,
                [(0, 1, 2), (2, 3, 4, 5), (440, 439, 438)])
    for k in range(12):
        writers.save_image(root / "subject_02" / "Video" / "Indoor-Cooperative" / f"{k:04d}.png",
                           np.full((48, 64, 3), 10 * k, np.uint8))
    return root, v1, t1


def test_frames_mode_with_stride(micc):
    root, v1, t1 = micc
    r = MICCFlorenceReader(root, split="cooperative", frame_stride=5, max_frames=4, scan_cache=1)
    # subject_01: frames 0,5,10,15 (25 frames, max 4); subject_02: 0,5,10 (12 frames)
    ids = [(r.items[i].subject, r.items[i].frames[0]) for i in range(len(r))]
    assert ids == [("subject_01", 0), ("subject_01", 5), ("subject_01", 10), ("subject_01", 15),
                   ("subject_02", 0), ("subject_02", 5), ("subject_02", 10)]
    for i, (subj, k) in enumerate(ids):
        s = r[i]
        assert s.kind == "single" and s.image.shape == (3, 48, 64)
        assert _frame_id(s.image) == k, (subj, k)
        assert s.meta["frame_index"] == k and s.identity == int(subj[-2:])
        assert s.labelled and s.scan_vertices.dtype == torch.float32
    s1 = r[0]
    np.testing.assert_allclose(s1.scan_vertices.numpy(), v1, atol=1e-3)
    assert s1.scan_triangles.shape == t1.shape
    assert s1.meta["scan_path"].endswith("frontal1/obj/110920150452.obj")
    s2 = r[5]
    assert s2.scan_vertices.shape == v1.shape and s2.scan_triangles.shape == (4, 3)


def test_set_mode_and_other_scan(micc):
    root, v1, _ = micc
    r = MICCFlorenceReader(root, split="cooperative", mode="set", frame_stride=6, scan="frontal2")
    assert len(r) == 2
    s = r[0]
    assert s.kind == "set" and s.image.shape == (5, 3, 48, 64)  # frames 0,6,12,18,24
    assert [_frame_id(im) for im in s.image] == [0, 6, 12, 18, 24]
    np.testing.assert_allclose(s.scan_vertices.numpy(), v1 * 1.1, atol=1e-3)
    with pytest.raises(MissingFileError, match="frontal2"):  # subject_02 has no frontal2 scan
        r[1]


def test_missing_setting_and_units(micc, writers):
    root, v1, _ = micc
    r = MICCFlorenceReader(root, split="outdoor")
    with pytest.raises(DataError) as e:
        r[0]
    assert "PTZ-Outdoor" in str(e.value) and "subject_01" in str(e.value)
    lax = MICCFlorenceReader(root, split="outdoor", strict=False, skip="none")
    assert lax[0] is None and lax[1] is None and lax.skipped == {"missing_file": 2}
    # a scan in metres is refused unless scan_scale converts it
    writers.obj(root / "subject_01" / "Model" / "frontal1" / "obj" / "110920150452.obj", scale=0.001)
    with pytest.raises(DataError, match="scan_scale"):
        MICCFlorenceReader(root, frame_stride=100)[0]
    s = MICCFlorenceReader(root, frame_stride=100, scan_scale=1000.0)[0]
    np.testing.assert_allclose(s.scan_vertices.numpy(), v1, rtol=1e-4, atol=1e-2)


def test_missing_root_names_the_source(tmp_path):
    with pytest.raises(MissingFileError) as e:
        MICCFlorenceReader(tmp_path / "none")
    assert "micc.unifi.it" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="subject_"):
        MICCFlorenceReader(tmp_path / "empty")


def test_vrml_parser_and_mesh_errors(tmp_path, writers):
    v = np.arange(18, dtype=float).reshape(6, 3)
    p = writers.wrl(tmp_path / "a.wrl", v, [(0, 1, 2), (1, 2, 3, 4), (0, 4, 5)])
    verts, tris = read_vrml(p)
    np.testing.assert_allclose(verts, v)
    assert tris.tolist() == [[0, 1, 2], [1, 2, 3], [1, 3, 4], [0, 4, 5]]  # texCoord points ignored
    bad = writers.wrl(tmp_path / "b.wrl", v, [(0, 1, 9)])
    with pytest.raises(DataError, match="outside"):
        read_vrml(bad)
    (tmp_path / "c.wrl").write_text("not vrml")
    with pytest.raises(DataError, match="VRML"):
        load_mesh(tmp_path / "c.wrl")
    (tmp_path / "d.obj").write_text("# nothing\n")
    with pytest.raises(DataError, match="no vertices"):
        load_mesh(tmp_path / "d.obj")
    with pytest.raises(DataError, match="unsupported"):
        load_mesh(writers.save_image(tmp_path / "e.xyz.png", np.zeros((2, 2, 3), np.uint8)))
    qv, qt = writers.obj(tmp_path / "q.obj", quads=True)
    lv, lt = load_mesh(tmp_path / "q.obj")
    np.testing.assert_allclose(lv, qv, atol=1e-4)  # file order kept
    assert lt.tolist() == qt.tolist()  # quads fan-triangulated
    # PLY through open3d
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(qv), o3d.utility.Vector3iVector(qt))
    o3d.io.write_triangle_mesh(str(tmp_path / "q.ply"), m)
    pv, pt = load_mesh(tmp_path / "q.ply")
    np.testing.assert_allclose(pv, qv, atol=1e-3)
    assert pt.shape == qt.shape


def test_unreadable_video(micc):
    root, _, _ = micc
    (root / "subject_01" / "Video" / "Indoor-Cooperative.mjpg").write_bytes(b"garbage" * 10)
    r = MICCFlorenceReader(root, strict=False, frame_stride=5)
    s = r[0]  # subject_01 is unreadable -> skipped to subject_02's first frame
    assert s.meta["subject"] == "subject_02" and r.skipped == {"unreadable_video": 1}
