"""``b3f reconstruct`` on real photos (../shared/data/photos_5pt), bad photos and bad options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark3dface.cli import reconstruct
from benchmark3dface.geometry.meshio import read_obj

#: fast fitting settings for tests (the defaults are benchmarked in benchmarks/fitting.py)
FAST = ["-m", "landmark_iters=20", "-m", "photo_iters=2", "-m", "fit_size=64"]


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="b3f")
    reconstruct.add_parser(parser.add_subparsers(dest="command"))
    return reconstruct.run(parser.parse_args(["reconstruct", *argv]))


@pytest.fixture(scope="module")
def photos(shared_data) -> Path:
    return shared_data("photos_5pt")


@pytest.fixture(scope="module")
def model():
    from benchmark3dface.facemodel import load_facemodel

    return load_facemodel("procedural")


def _ply_header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        head = fh.read(600).split(b"end_header")[0].decode("ascii")
    return head.splitlines()


def test_two_photos_and_a_truncated_one(tmp_path, photos, model, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((photos / "000002.jpg").read_bytes()[:2500])  # a truncated JPEG
    out = tmp_path / "out"
    rc = run_cli([str(photos / "000002.jpg"), str(bad), str(photos / "vd006.png"), "--method", "fitting",
                  "--out", str(out), "--size", "96", *FAST])
    printed = capsys.readouterr()
    assert rc == 1
    assert "2 reconstructed, 1 failed: unreadable_image x1" in printed.out
    assert "broken.jpg" in printed.err
    for name, ext in (("000002", ".jpg"), ("vd006", ".png")):
        mesh = read_obj(out / f"{name}.obj")
        assert mesh.vertices.shape == (model.num_vertices, 3)
        assert mesh.triangles.shape == (model.num_triangles, 3)
        assert mesh.colors is not None and mesh.colors.min() >= 0 and mesh.colors.max() <= 1
        # model frame, millimetres: a face is ~10-25 cm across and centred near the origin
        extent = mesh.vertices.max(0) - mesh.vertices.min(0)
        assert 100 < extent[0] < 250 and 100 < extent[1] < 300
        assert np.abs(mesh.vertices.mean(0)).max() < 30
        header = _ply_header(out / f"{name}.ply")
        assert f"element vertex {model.num_vertices}" in header and f"element face {model.num_triangles}" in header
        photo = Image.open(photos / f"{name}{ext}")
        png = Image.open(out / f"{name}_lm.png")
        assert png.size == photo.size
        info = json.loads((out / f"{name}.json").read_text())
        assert info["method"] == "fitting" and info["landmarks_source"].startswith("file:")
        lm = np.array(info["landmarks2d_photo_px"])
        assert lm.shape == (68, 2)
        # the predicted landmarks land on the face given by the photo's 5 points
        ref = np.loadtxt(photos / f"{name}.txt")
        pred5 = np.stack([lm[[36, 39]].mean(0), lm[[42, 45]].mean(0), lm[30], lm[48], lm[54]])
        eye_dist = np.linalg.norm(ref[1] - ref[0])
        assert np.linalg.norm(pred5 - ref, axis=1).mean() < 0.25 * eye_dist
        assert set(info["coefficients"]) == {"id", "exp", "tex", "angles", "sh", "trans"}
        assert len(info["coefficients"]["id"]) == model.layout.id
        assert info["timing"]["fit_seconds"] > 0 and len(info["pose"]["rotation"]) == 3
        # the drawn landmarks are visible: some pixels near the nose tip are pure-ish green
        arr = np.asarray(png.convert("RGB")).astype(int)
        x, y = np.round(lm[30]).astype(int)
        patch = arr[max(0, y - 4):y + 5, max(0, x - 4):x + 5]
        assert ((patch[..., 1] > 200) & (patch[..., 0] < 80)).any()
    assert not (out / "broken.obj").exists()


def test_mtcnn_path_and_no_face(tmp_path, photos):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(blank)
    out = tmp_path / "out"
    rc = run_cli([str(photos / "015259.jpg"), str(blank), "--method", "meanface", "--out", str(out),
                  "--landmarks", "detect", "--size", "128"])
    assert rc == 1
    info = json.loads((out / "015259.json").read_text())
    # the detector: BlazeFace + face-api 68 points when their weights are cached, else MTCNN
    assert info["landmarks_source"] in ("mtcnn", "blazeface+faceapi68") and info["detection"]["score"] > 0.85
    ref = np.loadtxt(photos / "015259.txt")
    detected = np.array(info["lm5_input_photo_px"])
    eye_dist = np.linalg.norm(ref[1] - ref[0])
    # the detected points, mapped to the crop and back, agree with the reference points
    assert np.linalg.norm(detected - ref, axis=1).max() < 0.15 * eye_dist
    assert not (out / "blank.obj").exists()


def test_trainable_method_needs_a_checkpoint(tmp_path, photos, monkeypatch):
    from benchmark3dface import methods
    from benchmark3dface.methods import MethodSpec, ReconstructionMethod

    class Net(ReconstructionMethod):
        spec = MethodSpec(name="net", trainable=True)

    monkeypatch.setattr(methods, "get_method", lambda name: Net)
    with pytest.raises(ValueError, match="--ckpt"):
        run_cli([str(photos / "000002.jpg"), "--method", "net", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        run_cli([str(photos / "000002.jpg"), "--method", "net", "--out", str(tmp_path), "--ckpt",
                 str(tmp_path / "missing.ckpt")])


def test_checkpoint_is_loaded_with_its_settings(tmp_path, photos):
    import lightning

    ckpt = tmp_path / "fit.ckpt"
    hp = {"landmark_iters": 7, "photo_iters": 1, "fit_size": 64, "facemodel": "procedural"}
    torch.save({"state_dict": {}, "hyper_parameters": hp, "pytorch-lightning_version": lightning.__version__}, ckpt)
    method = reconstruct.load_method("fitting", ckpt)
    assert method.stages[0].iterations == 7 and method.fit_size == 64 and not method.training
    out = tmp_path / "out"
    assert run_cli([str(photos / "vd025.png"), "--method", "fitting", "--ckpt", str(ckpt), "--out", str(out),
                    "--size", "64"]) == 0
    assert json.loads((out / "vd025.json").read_text())["checkpoint"] == str(ckpt)


def test_option_errors(tmp_path, photos):
    with pytest.raises(ValueError, match="names one file"):
        run_cli([str(photos / "000002.jpg"), str(photos / "vd006.png"), "--method", "meanface", "--out",
                 str(tmp_path), "--landmarks", str(photos / "000002.txt")])
    with pytest.raises(FileNotFoundError, match="--landmarks"):
        run_cli([str(photos / "000002.jpg"), "--method", "meanface", "--out", str(tmp_path), "--landmarks",
                 str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        reconstruct.parse_method_args(["photo_iters"])
    assert reconstruct.parse_method_args(["a=3", "b=x", "c=[1,2]"]) == {"a": 3, "b": "x", "c": [1, 2]}
    assert reconstruct.unique_names([Path("a/x.jpg"), Path("b/x.png"), Path("y.jpg")]) == ["x", "x_1", "y"]


def test_missing_landmark_file_in_folder_is_a_per_photo_error(tmp_path, photos, capsys):
    lmdir = tmp_path / "lm"
    lmdir.mkdir()
    np.savetxt(lmdir / "vd051.txt", np.loadtxt(photos / "vd051.txt"))
    out = tmp_path / "out"
    rc = run_cli([str(photos / "vd051.png"), str(photos / "vd006.png"), "--method", "meanface", "--out", str(out),
                  "--landmarks", str(lmdir), "--size", "64"])
    assert rc == 1
    assert "1 reconstructed, 1 failed: missing_file x1" in capsys.readouterr().out
    assert (out / "vd051.obj").is_file() and not (out / "vd006.obj").exists()
