import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture writers beside this file
from facemodel_fixtures import write_facexmodel_dir  # noqa: E402

from benchmark3dface.facemodel import CoeffLayout, load_facemodel  # noqa: E402
from benchmark3dface.facemodel.ict import (FACE_VERTICES, NARROW_FACE_VERTICES, IctFormatError,  # noqa: E402
                                           load_ict_facekit)

NAMES = ("browDown_L", "jawOpen", "mouthSmile_R", "eyeBlink_L")


@pytest.fixture(scope="module")
def npz(shared_data):
    return dict(np.load(shared_data("ict_face_model", "ict_face_light.npz")))


@pytest.fixture(scope="module")
def ict_dir(npz, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ict") / "FaceXModel"
    write_facexmodel_dir(folder, npz, n_id=3, exp_names=NAMES)
    return folder


@pytest.fixture(scope="module")
def model(ict_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ICT's frame is the conventional one: no warnings
        return load_ict_facekit(ict_dir)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_mean_and_modes_equal_npz_in_mm(npz, model):
    neutral = npz["neutral"].astype(np.float64)
    np.testing.assert_allclose(model.mean_shape.numpy(), neutral - neutral.mean(0), atol=1e-4)
    np.testing.assert_allclose(model.meta["recentred_by_mm"], neutral.mean(0), atol=1e-3)
    np.testing.assert_allclose(model.id_basis.numpy(), npz["identity_modes"][:3], atol=1e-4)
    names = [str(s) for s in npz["expression_names"]]
    expected = np.stack([npz["expression_modes"][names.index(n)] for n in NAMES])
    np.testing.assert_allclose(model.exp_basis.numpy(), expected, atol=1e-4)
    assert model.exp_names == list(NAMES)
    assert model.num_vertices == FACE_VERTICES
    assert model.units == "mm" and model.source_units == "cm" and model.name == "ict"


def test_topology_landmarks_and_prior(npz, model):
    # quads (a, b, c, d) are split into (a, b, c), (a, c, d): exactly the packed triangle list;
    # the head-only and face/head-mixed polygons are cropped away
    np.testing.assert_array_equal(model.triangles.numpy(), npz["triangles"])
    np.testing.assert_array_equal(model.landmarks68.numpy(), npz["landmarks68"])
    assert int(model.landmarks68[30]) == 4857
    assert model.exp_prior == "unit_interval"
    assert model.layout.tex == 0 and model.layout.id == 3 and model.layout.exp == len(NAMES)
    # uniform albedo, decoding a blendshape weight moves by the blendshape
    assert torch.allclose(model.mean_albedo, model.mean_albedo[:1].expand_as(model.mean_albedo))
    w = torch.zeros(1, model.layout.exp)
    w[0, 1] = 0.5
    moved = model.shape(torch.zeros(1, model.layout.id), w)[0] - model.mean_shape
    assert torch.allclose(moved, 0.5 * model.exp_basis[1], atol=1e-5)
    assert "winding_flipped" not in model.meta


def test_narrow_face_area(npz, ict_dir):
    m = load_ict_facekit(ict_dir, face_area="narrow")
    assert m.num_vertices == NARROW_FACE_VERTICES
    tri = npz["triangles"]
    np.testing.assert_array_equal(m.triangles.numpy(), tri[(tri < NARROW_FACE_VERTICES).all(1)])
    assert m.num_triangles == 2 * 6560  # README: 6560 polygons in the narrow face area
    np.testing.assert_allclose(m.id_basis.numpy(), npz["identity_modes"][:3, :NARROW_FACE_VERTICES], atol=1e-4)
    with pytest.raises(ValueError, match="face_area"):
        load_ict_facekit(ict_dir, face_area="head")


def test_factory_repo_root_layout_and_limits(ict_dir):
    m = load_facemodel("ict", str(ict_dir.parent), num_identities=2,
                       layout=CoeffLayout(id=2, exp=2, tex=0))  # a clone root holding FaceXModel/
    assert m.id_basis.shape[0] == 2 and m.exp_names == list(NAMES[:2])
    m2 = load_ict_facekit(ict_dir, expressions=["jawOpen"])
    assert m2.exp_names == ["jawOpen"]


def test_landmarks_path_when_json_has_none(npz, ict_dir, tmp_path):
    d = _copy(ict_dir, tmp_path / "FaceXModel")
    cfg = json.loads((d / "vertex_indices.json").read_text())
    del cfg["idx_to_landmark_verts"]
    (d / "vertex_indices.json").write_text(json.dumps(cfg))
    with pytest.raises(IctFormatError, match="idx_to_landmark_verts"):
        load_ict_facekit(d)
    lm = tmp_path / "lm68.txt"
    lm.write_text(" ".join(str(i) for i in npz["landmarks68"]))
    m = load_ict_facekit(d, landmarks_path=lm)
    np.testing.assert_array_equal(m.landmarks68.numpy(), npz["landmarks68"])
    js = tmp_path / "lm.json"
    js.write_text(json.dumps({"landmarks68": [int(i) for i in npz["landmarks68"]]}))
    assert torch.equal(load_ict_facekit(d, landmarks_path=js).landmarks68, m.landmarks68)
    lm.write_text("1 2 3")
    with pytest.raises(IctFormatError, match="68"):
        load_ict_facekit(d, landmarks_path=lm)
    lm.write_text(" ".join(["9500"] * 68))
    with pytest.raises(IctFormatError, match="face"):
        load_ict_facekit(d, landmarks_path=lm)


@pytest.mark.parametrize("victim", ["identity000.obj", "jawOpen.obj", "vertex_indices.json",
                                    "generic_neutral_mesh.obj"])
def test_missing_files_name_file_and_source(ict_dir, tmp_path, victim):
    d = _copy(ict_dir, tmp_path / "FaceXModel")
    (d / victim).unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_ict_facekit(d)
    assert victim in str(err.value) and "github.com/ICT-VGL/ICT-FaceKit" in str(err.value)


def test_missing_folder_and_bad_content(ict_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="ICT-FaceKit"):
        load_ict_facekit(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="ICT-FaceKit"):
        load_ict_facekit(None)
    d = _copy(ict_dir, tmp_path / "FaceXModel")
    text = (d / "identity001.obj").read_text().splitlines()
    first_v = next(i for i, ln in enumerate(text) if ln.startswith("v "))
    (d / "identity001.obj").write_text("\n".join(text[:first_v] + text[first_v + 1:]) + "\n")
    with pytest.raises(IctFormatError, match="identity001.obj: has"):
        load_ict_facekit(d)
    (d / "vertex_indices.json").write_text("{not json")
    with pytest.raises(IctFormatError, match="vertex_indices.json"):
        load_ict_facekit(d)
