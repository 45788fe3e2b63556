import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture writers beside this file
from facemodel_fixtures import write_bfm09_dir, write_facexmodel_dir  # noqa: E402

from benchmark3dface.facemodel import cli  # noqa: E402
from benchmark3dface.facemodel.bfm import load_bfm_front  # noqa: E402
from benchmark3dface.geometry.meshio import read_obj  # noqa: E402


def b3f(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="b3f")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    return cli.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def bfm_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("clibfm")
    write_bfm09_dir(root / "raw", n_shape=90, n_exp=70, extra_exp=20, extra_bfm=20)
    out = root / "model" / "BFM_model_front.mat"
    assert b3f("facemodel", "build-bfm", "--bfm-dir", str(root / "raw"), "--out", str(out)) == 0
    return out


def test_build_bfm_writes_a_loadable_file(bfm_file, capsys):
    assert bfm_file.is_file()
    m = load_bfm_front(bfm_file)
    assert m.layout.id == 80 and m.layout.exp == 64 and m.layout.tex == 80


def test_info_json_and_table(bfm_file, capsys):
    capsys.readouterr()
    assert b3f("facemodel", "info", "--source", "bfm", "--path", str(bfm_file), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    m = load_bfm_front(bfm_file)
    assert info["name"] == "bfm" and info["units"] == "mm"
    assert info["vertices"] == m.num_vertices and info["triangles"] == m.num_triangles
    assert info["layout"]["id"] == 80 and info["coefficients"] == 257
    lo, hi = m.mean_shape.min(0).values, m.mean_shape.max(0).values
    np.testing.assert_allclose(info["extent_mm"], (hi - lo).numpy(), atol=0.01)
    assert b3f("facemodel", "info", "--source", "bfm", "--path", str(bfm_file)) == 0
    out = capsys.readouterr().out
    assert "bfm" in out and str(m.num_vertices) in out and "extent_mm" in out


def test_export_ply_mean_and_random_faces(bfm_file, tmp_path):
    o3d = pytest.importorskip("open3d")
    out = tmp_path / "exp"
    assert b3f("facemodel", "export", "--source", "bfm", "--path", str(bfm_file), "--out", str(out),
               "--random", "2", "--seed", "3", "--format", "ply") == 0
    assert sorted(p.name for p in out.iterdir()) == ["mean.ply", "random_000.ply", "random_001.ply"]
    m = load_bfm_front(bfm_file)
    mean = o3d.io.read_triangle_mesh(str(out / "mean.ply"))
    np.testing.assert_allclose(np.asarray(mean.vertices), m.mean_shape.numpy(), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(mean.triangles), m.triangles.numpy())
    np.testing.assert_allclose(np.asarray(mean.vertex_colors), np.round(m.mean_albedo.numpy() * 255) / 255, atol=1e-6)
    r0 = np.asarray(o3d.io.read_triangle_mesh(str(out / "random_000.ply")).vertices)
    r1 = np.asarray(o3d.io.read_triangle_mesh(str(out / "random_001.ply")).vertices)
    assert np.abs(r0 - m.mean_shape.numpy()).max() > 0.1 and np.abs(r0 - r1).max() > 0.1
    # deterministic given the seed (face i does not depend on --random), different for another seed
    out2 = tmp_path / "exp2"
    b3f("facemodel", "export", "--source", "bfm", "--path", str(bfm_file), "--out", str(out2),
        "--random", "1", "--seed", "3", "--format", "ply")
    assert (out2 / "random_000.ply").read_bytes() == (out / "random_000.ply").read_bytes()
    out3 = tmp_path / "exp3"
    b3f("facemodel", "export", "--source", "bfm", "--path", str(bfm_file), "--out", str(out3),
        "--random", "1", "--seed", "4", "--format", "ply")
    assert (out3 / "random_000.ply").read_bytes() != (out / "random_000.ply").read_bytes()


def test_errors_return_2_with_message(tmp_path, capsys):
    assert b3f("facemodel", "info", "--source", "bfm", "--path", str(tmp_path / "none.mat")) == 2
    err = capsys.readouterr().err
    assert "BFM_model_front.mat" in err and "build-bfm" in err
    assert b3f("facemodel", "build-bfm", "--bfm-dir", str(tmp_path), "--out", str(tmp_path / "x.mat")) == 2
    assert "01_MorphableModel.mat" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        b3f("facemodel", "info", "--source", "flame")


def test_ict_export_obj_and_info(shared_data, tmp_path, capsys):
    npz = dict(np.load(shared_data("ict_face_model", "ict_face_light.npz")))
    folder = tmp_path / "FaceXModel"
    write_facexmodel_dir(folder, npz, n_id=2, exp_names=("jawOpen", "eyeBlink_R"))
    assert b3f("facemodel", "info", "--source", "ict", "--path", str(folder), "--json", "--face-area", "narrow") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vertices"] == 6706 and info["exp_prior"] == "unit_interval" and info["has_albedo"] is False
    out = tmp_path / "meshes"
    assert b3f("facemodel", "export", "--source", "ict", "--path", str(folder), "--out", str(out),
               "--random", "1") == 0
    mesh = read_obj(out / "mean.obj")
    neutral = npz["neutral"].astype(np.float64)
    np.testing.assert_allclose(mesh.vertices, neutral - neutral.mean(0), atol=1e-4)
    np.testing.assert_array_equal(mesh.triangles, npz["triangles"])
    assert np.ptp(mesh.colors, axis=0).max() < 1e-6  # uniform skin tone
    assert read_obj(out / "random_000.obj").vertices.shape == neutral.shape


def test_procedural_export(tmp_path):
    try:
        from benchmark3dface.facemodel.procedural import load_procedural_model  # noqa: F401
    except ImportError:
        pytest.skip("the procedural face model (benchmark3dface.facemodel.procedural) is not in this build yet")
    out = tmp_path / "proc"
    assert b3f("facemodel", "export", "--out", str(out), "--random", "1", "--format", "obj") == 0
    mesh = read_obj(out / "mean.obj")
    assert mesh.colors is not None and len(mesh.triangles) > 0
    assert abs(mesh.vertices.mean(0)).max() < 1.0  # the mean face is centred (mm)
    assert (out / "random_000.obj").is_file()


def test_wired_into_b3f_main(bfm_file, capsys):
    main = pytest.importorskip("benchmark3dface.cli.main")
    assert main.main(["facemodel", "info", "--source", "bfm", "--path", str(bfm_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "bfm"
