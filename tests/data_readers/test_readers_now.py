"""NoW reader on a fixture in the benchmark's layout: split lists, per-subject scans and 7 scan
landmarks as MeshLab .pp, .txt and .npy."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark3dface.data.readers import DataError, MissingFileError, NoWReader, get_reader
from benchmark3dface.data.readers.annotations import read_picked_points

SUBJECTS = ("FaMoS_180424_03335_TA", "FaMoS_180426_03336_TA", "FaMoS_180427_03338_TA")
LM7 = np.array([[-45, 30, 10], [-15, 30, 15], [15, 30, 15], [45, 30, 10], [0, -10, 40],
                [-25, -40, 20], [25, -40, 20]], float)


def _pp(path, pts):
    rows = "\n".join(f' <point x="{p[0]}" y="{p[1]}" z="{p[2]}" name="{k}" active="1"/>'
                     for k, p in enumerate(pts))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<!DOCTYPE PickedPoints>\n<PickedPoints>\n <DocumentData>\n  <DataFileName '
                    'name="natural_head_rotation.000001.obj"/>\n  <templateName name=""/>\n'
                    f' </DocumentData>\n{rows}\n</PickedPoints>\n')
    return path


@pytest.fixture
def now(tmp_path, writers):
    root = tmp_path / "final_release_version"
    lines = []
    for k, subj in enumerate(SUBJECTS):
        for cond in ("multiview_neutral", "selfie"):
            rel = f"{subj}/{cond}/IMG_{k}{len(cond)}.jpg"
            writers.save_image(root / "iphone_pictures" / rel, writers.image(96, 72, k), quality=95)
            lines.append(rel)
        v, _ = writers.obj(root / "scans" / subj / "natural_head_rotation.000001.obj")
        lmd = root / "scans_lmks_onlypp" / subj
        if k == 0:
            _pp(lmd / "natural_head_rotation.000001_picked_points.pp", LM7)
        elif k == 1:
            lmd.mkdir(parents=True)
            np.savetxt(lmd / "lmks.txt", LM7 + 1)
        else:
            lmd.mkdir(parents=True)
            np.save(lmd / "lmks.npy", LM7 + 2)
    (root / "imagepathsvalidation.txt").write_text("\n".join(lines[:4]) + "\n")
    (root / "imagepathstest.txt").write_text("\n".join(lines[4:]) + "\n")
    return root, v


def test_validation_split(now):
    root, v = now
    r = get_reader("now")(root, split="val")
    assert len(r) == 4
    s = r[0]
    assert s.meta["subject"] == SUBJECTS[0] and s.meta["condition"] == "multiview_neutral"
    assert s.image.shape == (3, 96, 72) and s.labelled
    np.testing.assert_allclose(s.scan_vertices.numpy(), v, atol=1e-3)
    np.testing.assert_allclose(s.scan_landmarks7.numpy(), LM7)
    assert s.meta["landmark_path"].endswith(".pp")
    np.testing.assert_allclose(r[2].scan_landmarks7.numpy(), LM7 + 1)  # .txt
    assert r[2].sample_id == f"now/{SUBJECTS[1]}/multiview_neutral/IMG_117"


def test_test_split_without_scans(now):
    root, _ = now
    import shutil

    shutil.rmtree(root / "scans" / SUBJECTS[2])
    r = NoWReader(root, split="test")
    s = r[0]
    assert s.meta["scan_available"] is False and s.scan_vertices is None and s.image is not None
    assert NoWReader(root, split="val")[3].scan_vertices is not None
    everything = NoWReader(root, split="all")  # outside 'test' a missing scan is an error
    assert len(everything) == 6
    with pytest.raises(MissingFileError) as e:
        everything[5]
    assert SUBJECTS[2] in str(e.value) and "NoW scan" in str(e.value)


def test_bad_landmarks_and_missing_lists(now):
    root, _ = now
    _pp(root / "scans_lmks_onlypp" / SUBJECTS[0] / "natural_head_rotation.000001_picked_points.pp", LM7[:5])
    with pytest.raises(DataError) as e:
        NoWReader(root, split="val")[0]
    assert e.value.reason == "bad_shape" and "(7, 3)" in str(e.value) and ".pp" in str(e.value)
    (root / "imagepathsvalidation.txt").unlink()
    with pytest.raises(MissingFileError) as e:
        NoWReader(root, split="val")
    assert "imagepathsvalidation.txt" in str(e.value) and "now.is.tue.mpg.de" in str(e.value)


def test_picked_points_parser(tmp_path):
    p = _pp(tmp_path / "a.pp", LM7)
    pts, names = read_picked_points(p)
    np.testing.assert_allclose(pts, LM7)
    assert names == [str(k) for k in range(7)]
    (tmp_path / "b.pp").write_text("<PickedPoints><point x='1' y='oops' z='2'/></PickedPoints>")
    with pytest.raises(DataError, match="x/y/z"):
        read_picked_points(tmp_path / "b.pp")
    (tmp_path / "c.pp").write_text("<PickedPoints><point")
    with pytest.raises(DataError, match="malformed"):
        read_picked_points(tmp_path / "c.pp")
