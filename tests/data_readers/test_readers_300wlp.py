"""300W-LP reader on a fixture written in the archive's format (scipy.io.savemat, same keys,
dtypes and shapes; landmarks/ folder without _Flip)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from benchmark3dface.data.readers import DataError, IBUG68_FLIP, MissingFileError, W300LPReader, get_reader
from benchmark3dface.data.readers.w300lp import source_face


@pytest.fixture
def lp(tmp_path, writers):
    info = writers.w300lp(tmp_path)
    return tmp_path, info


def test_all_subsets_and_labels(lp):
    root, info = lp
    r = get_reader("300w_lp")(root, split="all")
    assert len(r) == 4 + 4 + 1  # AFW, AFW_Flip, HELEN
    by_id = {r[i].sample_id: r[i] for i in range(len(r))}
    s = by_id["300w_lp/AFW/AFW_134212_1_1"]
    np.testing.assert_allclose(s.lm68.numpy(), info[("AFW", "AFW_134212_1_1")], atol=1e-4)  # pts_3d - 0.5
    assert s.meta["shape_para"].shape == (199,) and s.meta["exp_para"].shape == (29,)
    assert s.meta["pose_para"].shape == (7,) and float(s.yaw) == pytest.approx(0.3)
    assert s.labelled and s.lm5.shape == (5, 2) and not s.meta["flipped"]
    assert s.meta["landmark_path"].endswith("landmarks/AFW/AFW_134212_1_1_pts.mat")


def test_flipped_images_get_mirrored_landmarks(lp):
    root, info = lp
    r = W300LPReader(root, split="all", subsets=("AFW",))
    flip = next(r[i] for i in range(len(r)) if r[i].sample_id == "300w_lp/AFW_Flip/AFW_2_1_0")
    orig = info[("AFW", "AFW_2_1_0")]
    w = flip.image.shape[-1]
    assert flip.meta["flipped"]
    # the flipped face's left eye corner (36) is the mirror of the original right one (45)
    np.testing.assert_allclose(flip.lm68[36].numpy(), [w - orig[45, 0], orig[45, 1]], atol=1e-4)
    # semantic order is preserved: left-eye points stay on the viewer's left
    assert float(flip.lm68[36:42, 0].mean()) < float(flip.lm68[42:48, 0].mean())
    # and the mirrored image content matches: pixel under lm68[30] equals the original's mirror pixel
    unflipped = next(r[i] for i in range(len(r)) if r[i].sample_id == "300w_lp/AFW/AFW_2_1_0")
    u, v = unflipped.lm68[30]
    a = unflipped.image[:, int(v), int(u)]
    u2, v2 = flip.lm68[30]
    b = flip.image[:, int(v2), int(u2)]
    assert float((a - b).abs().max()) < 0.15


def test_landmark_variants(lp):
    root, info = lp
    lm = info[("HELEN", "HELEN_10405146_1_0")]
    s2d = W300LPReader(root, split="all", subsets=("HELEN",), landmarks="pts_2d")[0]
    np.testing.assert_allclose(s2d.lm68.numpy(), lm + 1.0, atol=1e-4)
    smat = W300LPReader(root, split="all", subsets=("HELEN",), include_flip=False, landmarks="mat")[0]
    np.testing.assert_allclose(smat.lm68.numpy(), lm, atol=1e-4)
    with pytest.raises(ValueError):
        W300LPReader(root, landmarks="pts_9d")


def test_split_by_source_face(lp):
    root, _ = lp
    tr = W300LPReader(root, split="train", val_fraction=0.5)
    va = W300LPReader(root, split="val", val_fraction=0.5)
    al = W300LPReader(root, split="all")
    tr_ids = {tr.items[i].image for i in range(len(tr))}
    va_ids = {va.items[i].image for i in range(len(va))}
    assert tr_ids.isdisjoint(va_ids) and tr_ids | va_ids == {it.image for it in al.items}
    for ids_a, ids_b in ((tr_ids, va_ids), (va_ids, tr_ids)):
        faces_a = {source_face(p.stem) for p in ids_a}
        assert faces_a.isdisjoint({source_face(p.stem) for p in ids_b})
    assert source_face("AFW_134212_1_3") == "AFW_134212_1"


def test_missing_landmark_file_and_bad_mat(lp):
    root, _ = lp
    (root / "landmarks" / "HELEN" / "HELEN_10405146_1_0_pts.mat").unlink()
    r = W300LPReader(root, split="all", subsets=("HELEN",))
    with pytest.raises(MissingFileError) as e:
        r[0]
    assert "HELEN_10405146_1_0_pts.mat" in str(e.value) and "300W-LP" in str(e.value)
    scipy.io.savemat(root / "landmarks" / "HELEN" / "HELEN_10405146_1_0_pts.mat",
                     {"pts_3d": np.full((68, 2), np.nan)})
    with pytest.raises(DataError, match="NaN"):
        r[0]
    scipy.io.savemat(root / "landmarks" / "HELEN" / "HELEN_10405146_1_0_pts.mat", {"pts": np.zeros((68, 2))})
    with pytest.raises(DataError) as e:
        r[0]
    assert e.value.reason == "missing_key" and "pts_3d" in str(e.value)


def test_missing_folders(tmp_path):
    with pytest.raises(MissingFileError, match="AFW"):
        W300LPReader(tmp_path)
    (tmp_path / "AFW").mkdir()
    with pytest.raises(MissingFileError, match="landmarks"):
        W300LPReader(tmp_path)


def test_flip_permutation_is_an_involution():
    perm = torch.tensor(IBUG68_FLIP)
    assert sorted(IBUG68_FLIP) == list(range(68))
    assert torch.equal(perm[perm], torch.arange(68))
    fixed = {i for i in range(68) if IBUG68_FLIP[i] == i}
    assert fixed == {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}
