"""FRGC-style reader: fixtures written in the .abs format (header, flag / X / Y / Z lines)."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch

from benchmark3dface.data.readers import DataError, get_reader
from benchmark3dface.data.readers.frgc import read_abs

ROWS, COLS = 6, 8


def _grid():
    v, u = np.mgrid[0:ROWS, 0:COLS]
    valid = ((u - 3.5) ** 2 / 12 + (v - 2.5) ** 2 / 6) < 1.0
    x, y = (u - 3.5) * 2.0, -(v - 2.5) * 2.0
    z = -1500.0 + 30.0 - 0.5 * (x ** 2 + y ** 2) / 10  # a bump toward the scanner (larger z = nearer)
    return valid, np.stack([x, y, z], -1)


def write_abs(path, valid, xyz, gz=False):
    rows, cols = valid.shape
    data = np.where(valid[..., None], xyz, -999999.0)
    lines = [f"{rows} rows", f"{cols} columns", "pixels (flag X Y Z):",
             " ".join(str(int(f)) for f in valid.reshape(-1))]
    lines += [" ".join(f"{val:.6f}" for val in data[..., k].reshape(-1)) for k in range(3)]
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


def test_reads_range_image_depth_points_and_landmarks(tmp_path):
    valid, xyz = _grid()
    write_abs(tmp_path / "04200d74.abs", valid, xyz)
    write_abs(tmp_path / "04201d10.abs.gz", valid, xyz, gz=True)
    lm = np.stack([np.linspace(1, 7, 68), np.linspace(1, 5, 68)], 1)
    np.savetxt(tmp_path / "04200d74.lm.txt", lm)
    reader = get_reader("frgc")(tmp_path)
    assert len(reader) == 2
    s = reader[0]
    assert s.sample_id == "frgc/04200d74"
    assert s.depth.shape == (ROWS, COLS)
    assert torch.equal(s.depth.isfinite(), torch.from_numpy(valid))
    # depth = -Z: the bump's tip (image centre) is the nearest point
    i, j = np.unravel_index(np.nanargmin(s.depth.numpy()), s.depth.shape)
    assert abs(i - 2.5) <= 0.5 and abs(j - 3.5) <= 0.5
    assert math.isclose(float(s.depth[2, 3]), -float(xyz[2, 3, 2]), rel_tol=1e-6)
    assert s.scan_vertices.shape == (int(valid.sum()), 3)
    assert s.lm68.shape == (68, 2) and torch.allclose(s.lm68, torch.from_numpy(lm).float())
    assert s.image.shape == (3, ROWS, COLS) and s.meta["image"] == "depth"
    g = reader[1]  # the gzip one, no landmarks
    assert g.lm68 is None and torch.allclose(g.depth.nan_to_num(0), s.depth.nan_to_num(0))


def test_truncated_file_is_one_line_naming_file_and_count(tmp_path):
    valid, xyz = _grid()
    p = tmp_path / "bad.abs"
    write_abs(p, valid, xyz)
    text = p.read_text().splitlines()
    text[-1] = " ".join(text[-1].split()[:-3])  # three Z values missing
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError) as e:
        read_abs(p)
    msg = str(e.value)
    assert "bad.abs" in msg and str(4 * ROWS * COLS - 3) in msg and "\n" not in msg


def test_valid_flag_on_invalid_value_and_bad_header_are_refused(tmp_path):
    valid, xyz = _grid()
    p = tmp_path / "x.abs"
    write_abs(p, valid, xyz)
    lines = p.read_text().splitlines()
    flags = lines[3].split()
    flags[0] = "1"  # corner pixel holds -999999 but is flagged valid
    lines[3] = " ".join(flags)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="1 pixels flagged valid"):
        read_abs(p)
    q = tmp_path / "y.abs"
    q.write_text("hello\n")
    with pytest.raises(DataError, match="not an FRGC .abs file"):
        read_abs(q)


def test_non_strict_reader_skips_and_counts_bad_files(tmp_path):
    valid, xyz = _grid()
    write_abs(tmp_path / "a.abs", valid, xyz)
    (tmp_path / "b.abs").write_text("3 rows\n3 columns\npixels (flag X Y Z):\n1 2\n")
    r = get_reader("frgc")(tmp_path, strict=False)
    assert r[1].sample_id == "frgc/a"
    assert r.skipped == {"bad_shape": 1}


def test_empty_folder_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\.abs"):
        get_reader("frgc")(tmp_path)
