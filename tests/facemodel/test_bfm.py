import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture writers beside this file
from facemodel_fixtures import write_bfm09_dir  # noqa: E402

from benchmark3dface.facemodel import load_facemodel  # noqa: E402
from benchmark3dface.facemodel.bfm import (BFM09_SOURCES, BfmFormatError, build_bfm_front,  # noqa: E402
                                           load_bfm_front, read_exp_pca)


@pytest.fixture(scope="module")
def bfm(tmp_path_factory):
    root = tmp_path_factory.mktemp("bfm")
    expected = write_bfm09_dir(root / "raw")
    out = build_bfm_front(root / "raw", root / "BFM_model_front.mat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the synthetic face is in the conventional frame: no warnings
        model = load_bfm_front(out)
    return root, out, expected, model


def _rewrite(src, dst, **changes):
    mat = {k: v for k, v in loadmat(str(src)).items() if not k.startswith("__")}
    for k, v in changes.items():
        if v is None:
            mat.pop(k)
        else:
            mat[k] = v
    savemat(str(dst), mat)
    return dst


def test_built_file_has_deng_keys_shapes_dtypes(bfm):
    _, out, exp, _ = bfm
    mat = loadmat(str(out))
    n = exp["n"]
    assert mat["meanshape"].shape == (1, 3 * n) and mat["meantex"].shape == (1, 3 * n)
    assert mat["idBase"].shape == (3 * n, 80) and mat["texBase"].shape == (3 * n, 80)
    assert mat["exBase"].shape == (3 * n, 64)
    for k in ("meanshape", "meantex", "idBase", "exBase", "texBase"):
        assert mat[k].dtype == np.float32, k
    # index arrays are copied unchanged (still 1-based)
    assert mat["keypoints"].min() >= 1 and mat["tri"].min() == 1
    assert mat["point_buf"].shape == (n, 8)
    # decimetres: the (un-centred) mean is BFM's shapeMU / 1e5, i.e. the fixture's mm / 100
    np.testing.assert_allclose(mat["meanshape"].reshape(-1, 3), (exp["vertices"] + exp["offset_mm"]) / 100,
                               atol=1e-6)


def test_mean_face_in_mm_recentred(bfm):
    _, _, exp, m = bfm
    v = exp["vertices"]
    np.testing.assert_allclose(m.mean_shape.numpy(), v - v.mean(0), atol=2e-3)
    assert abs(m.mean_shape.mean(0)).max() < 1e-3
    np.testing.assert_allclose(m.meta["recentred_by_mm"], v.mean(0) + exp["offset_mm"], atol=1e-2)
    assert m.units == "mm" and m.source_units == "dm" and m.name == "bfm"


def test_bases_match_hand_computed_fields(bfm):
    _, _, exp, m = bfm
    np.testing.assert_allclose(m.id_basis.numpy(), exp["id_field"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.exp_basis.numpy(), exp["exp_field"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.mean_albedo.numpy(), exp["albedo"], atol=1e-5)
    np.testing.assert_allclose(m.albedo_basis.numpy(), exp["tex_field"], rtol=1e-4, atol=1e-7)


def test_unit_coefficients_move_by_basis_columns(bfm):
    _, _, exp, m = bfm
    ident = torch.zeros(1, m.layout.id)
    ident[0, 7] = 1.0
    expr = torch.zeros(1, m.layout.exp)
    v = m.shape(ident, expr)[0] - m.mean_shape
    np.testing.assert_allclose(v.numpy(), exp["id_field"][7], rtol=1e-4, atol=1e-4)
    expr[0, 5] = -2.0
    v = m.shape(torch.zeros(1, m.layout.id), expr)[0] - m.mean_shape
    np.testing.assert_allclose(v.numpy(), -2.0 * exp["exp_field"][5], rtol=1e-4, atol=1e-4)
    tex = torch.zeros(1, m.layout.tex)
    tex[0, 2] = 1.0
    a = m.albedo(tex)[0] - m.mean_albedo
    np.testing.assert_allclose(a.numpy(), exp["tex_field"][2], atol=1e-5)


def test_indices_zero_based_and_masks(bfm):
    _, _, exp, m = bfm
    np.testing.assert_array_equal(m.triangles.numpy(), exp["triangles"])
    np.testing.assert_array_equal(m.landmarks68.numpy(), exp["landmarks"])
    np.testing.assert_array_equal(m.skin.numpy(), exp["skin"])
    front = np.zeros(exp["n"], bool)
    front[exp["front_idx"]] = True
    np.testing.assert_array_equal(m.front_mask.numpy(), front)
    # the nose tip is the most frontal vertex and the layout is Deng's
    assert int(m.mean_shape[:, 2].argmax()) == int(m.landmarks68[30])
    assert m.layout.size == 257
    assert "winding_flipped" not in m.meta


def test_load_via_factory_and_folder_and_column_meanshape(bfm, tmp_path):
    root, out, exp, m = bfm
    m2 = load_facemodel("bfm", str(root))  # a folder holding BFM_model_front.mat
    assert torch.equal(m2.mean_shape, m.mean_shape)
    col = _rewrite(out, tmp_path / "col.mat", meanshape=loadmat(str(out))["meanshape"].T,
                   meantex=loadmat(str(out))["meantex"].T)
    m3 = load_bfm_front(col)
    assert torch.allclose(m3.mean_shape, m.mean_shape) and torch.allclose(m3.mean_albedo, m.mean_albedo)


def test_reversed_winding_is_fixed(bfm, tmp_path):
    _, out, exp, _ = bfm
    tri = loadmat(str(out))["tri"]
    p = _rewrite(out, tmp_path / "rev.mat", tri=tri[:, [0, 2, 1]])
    m = load_bfm_front(p)
    np.testing.assert_array_equal(m.triangles.numpy(), exp["triangles"])
    assert m.meta["winding_flipped"] is True


def test_mirrored_frame_warns(bfm, tmp_path):
    _, out, _, _ = bfm
    ms = loadmat(str(out))["meanshape"].reshape(-1, 3) * np.array([-1, 1, 1], np.float32)
    p = _rewrite(out, tmp_path / "mirror.mat", meanshape=ms.reshape(1, -1))
    with pytest.warns(UserWarning, match="landmark 36"):
        load_bfm_front(p)


def test_missing_front_file_explains_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_bfm_front(tmp_path / "BFM_model_front.mat")
    msg = str(err.value)
    for part in ("BFM_model_front.mat", "b3f facemodel build-bfm", "faces.dmi.unibas.ch", "Exp_Pca.bin",
                 "Deep3DFaceReconstruction", "std_exp.txt", "facemodel_info.mat"):
        assert part in msg, part
    with pytest.raises(FileNotFoundError, match="BFM_model_front.mat"):
        load_bfm_front(None)


@pytest.mark.parametrize("key, value, pattern", [
    ("idBase", None, "'idBase' is missing"),
    ("exBase", np.zeros((5, 64), np.float32), "'exBase' has shape"),
    ("keypoints", np.arange(68)[None].astype(np.float64), "'keypoints' has indices in \\[0"),
    ("tri", np.ones((4, 2)), "'tri' has shape"),
    ("meantex", "nan", "'meantex' contains NaN"),
])
def test_bad_keys_name_file_and_key(bfm, tmp_path, key, value, pattern):
    _, out, _, _ = bfm
    if isinstance(value, str):
        value = loadmat(str(out))[key].copy()
        value[0, 3] = np.nan
    p = _rewrite(out, tmp_path / "bad.mat", **{key: value})
    with pytest.raises(BfmFormatError, match=pattern) as err:
        load_bfm_front(p)
    assert str(p) in str(err.value)


@pytest.mark.parametrize("name", list(BFM09_SOURCES))
def test_build_missing_input_names_it_and_its_source(tmp_path, name):
    raw = tmp_path / "raw"
    write_bfm09_dir(raw, n_shape=90, n_exp=70, extra_exp=10, extra_bfm=10)
    (raw / name).unlink()
    with pytest.raises(FileNotFoundError) as err:
        build_bfm_front(raw, tmp_path / "out.mat")
    assert name in str(err.value) and BFM09_SOURCES[name] in str(err.value)


def test_build_rejects_bad_inputs(tmp_path):
    raw = tmp_path / "raw"
    write_bfm09_dir(raw, n_shape=90, n_exp=70, extra_exp=10, extra_bfm=10)
    with open(raw / "Exp_Pca.bin", "ab") as fh:
        fh.write(b"\0\0\0\0")
    with pytest.raises(BfmFormatError, match="Exp_Pca.bin"):
        build_bfm_front(raw, tmp_path / "out.mat")
    raw2 = tmp_path / "raw2"
    write_bfm09_dir(raw2, n_shape=90, n_exp=70, extra_exp=10, extra_bfm=10)
    _rewrite(raw2 / "BFM_exp_idx.mat", raw2 / "BFM_exp_idx.mat", trimIndex=None, trim=np.ones((3, 1)))
    with pytest.raises(BfmFormatError, match="'trimIndex' is missing"):
        build_bfm_front(raw2, tmp_path / "out.mat")
    write_bfm09_dir(raw, n_shape=90, n_exp=70, extra_exp=10, extra_bfm=10)  # repaired Exp_Pca.bin
    np.savetxt(raw / "std_exp.txt", np.ones(5))
    with pytest.raises(BfmFormatError, match="std_exp.txt: has 5 values"):
        build_bfm_front(raw, tmp_path / "out.mat")
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        build_bfm_front(tmp_path / "no_such_dir", tmp_path / "out.mat")


def test_read_exp_pca_component_major_layout(tmp_path):
    nv, k = 4, 3
    mu = np.arange(3 * nv, dtype=np.float32)
    pcs = np.arange(k * 3 * nv, dtype=np.float32).reshape(k, 3 * nv) + 100  # one block per component
    p = tmp_path / "Exp_Pca.bin"
    with open(p, "wb") as fh:
        np.array([k], "<i4").tofile(fh)
        mu.tofile(fh)
        pcs.tofile(fh)
    got_mu, got_pc = read_exp_pca(p, nv)
    np.testing.assert_array_equal(got_mu, mu)
    assert got_pc.shape == (3 * nv, k)
    np.testing.assert_array_equal(got_pc[:, 1], pcs[1])
    with pytest.raises(BfmFormatError, match="should have"):
        read_exp_pca(p, nv + 1)
