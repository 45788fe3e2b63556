"""Bad AFLW2000-3D ``.mat`` files: one error naming the file and the problem (never scipy's raw
``MatReadError``), and with ``strict=False`` the sample is skipped, logged and counted."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.io

from benchmark3dface.data.readers import AFLW2000Reader, DataError
from benchmark3dface.data.readers.annotations import load_mat


@pytest.fixture
def aflw_with_bad_mats(tmp_path, writers):
    """4 samples: image00001.mat is 0 bytes, image00002.mat is text (not a MAT file)."""
    root = writers.aflw2000(tmp_path / "aflw", n=4)
    (root / "image00001.mat").write_bytes(b"")
    (root / "image00002.mat").write_text("pt3d_68 = [1 2 3]\n" * 20)
    return root


def test_empty_and_non_mat_files_name_the_file(aflw_with_bad_mats):
    r = AFLW2000Reader(aflw_with_bad_mats)
    assert r[0].sample_id == "aflw2000/image00000" and r[3].sample_id == "aflw2000/image00003"
    with pytest.raises(DataError) as empty:
        r[1]
    with pytest.raises(DataError) as text:
        r[2]
    for exc, name, words in ((empty.value, "image00001.mat", "empty file (0 bytes)"),
                             (text.value, "image00002.mat", "not a MATLAB .mat file")):
        assert type(exc) is DataError and exc.reason == "unreadable_annotation"
        assert exc.path.endswith(name) and words in str(exc)
        assert str(exc).startswith(str(aflw_with_bad_mats / name) + ": ")
        assert "\n" not in str(exc)


def test_non_strict_skips_logs_and_counts(aflw_with_bad_mats, caplog):
    r = AFLW2000Reader(aflw_with_bad_mats, strict=False)
    with caplog.at_level(logging.WARNING, logger="benchmark3dface.data"):
        ids = [r[i].sample_id for i in range(len(r))]
        r[1], r[2]  # a known bad sample is neither re-logged nor counted twice
    # index 1 and 2 fall through to the next readable sample
    assert ids == ["aflw2000/image00000", "aflw2000/image00003", "aflw2000/image00003", "aflw2000/image00003"]
    assert r.skipped == {"unreadable_annotation": 2}
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "benchmark3dface.data"]
    assert len(lines) == 2
    assert "skipped sample 1 of 4" in lines[0] and "image00001.mat: empty file" in lines[0]
    assert "skipped sample 2 of 4" in lines[1] and "image00002.mat: not a MATLAB .mat file" in lines[1]
    report = r.skip_report()
    assert report.startswith("2 of 4 samples skipped: ")
    assert report.count("image00001.mat: empty file (0 bytes)") == 1
    assert report.count("image00002.mat: not a MATLAB .mat file") == 1
    assert "\n" not in report


def test_validate_reports_all_bad_samples_up_front(aflw_with_bad_mats):
    r = AFLW2000Reader(aflw_with_bad_mats, strict=True)  # validate() reads all, whatever strict is
    assert r.validate() == {"unreadable_annotation": 2}
    assert r.skip_report().startswith("2 of 4 samples skipped: ")
    assert r.skip_report(max_files=1).endswith("; ... and 1 more")
    r.reset_skipped()
    assert r.skip_report() == "0 of 4 samples skipped"


def test_every_corruption_of_a_mat_file_is_a_data_error(tmp_path):
    """Truncations and byte flips of a valid file: each either still loads or raises a
    DataError naming the file -- never scipy's own exception types."""
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"pt3d_68": np.arange(204.0).reshape(3, 68), "Pose_Para": np.zeros((1, 7))})
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    variants = {f"trunc{n}": data[:n] for n in (1, 10, 100, 127, 128, 129, 200, 500, len(data) - 1)}
    for k in range(40):
        b = bytearray(data)
        for pos in rng.integers(0, len(b), 4):
            b[pos] = int(rng.integers(0, 256))
        variants[f"flip{k}"] = bytes(b)
    variants["jpeg"] = b"\xff\xd8\xff\xe0" + bytes(300)
    variants["hdf5"] = b"\x89HDF\r\n\x1a\n" + bytes(600)
    raised = 0
    for name, blob in variants.items():
        path = tmp_path / f"{name}.mat"
        path.write_bytes(blob)
        try:
            out = load_mat(path)
        except DataError as exc:
            raised += 1
            assert exc.path == str(path) and str(exc).startswith(f"{path}: ") and "\n" not in str(exc), name
            assert exc.reason == "unreadable_annotation", name
        else:
            assert isinstance(out, dict), name
    assert raised >= len(variants) // 4  # the corruptions do break most files (the test has teeth)
    with pytest.raises(DataError, match="missing key"):
        load_mat(good, required=("pt2d",))
