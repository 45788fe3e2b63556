"""``b3f evaluate`` on real files and on fixtures written in the datasets' true formats:
AFLW2000-3D (../shared/data), a NoW-style folder with OBJ meshes + 7-point files, a MICC-style
folder with several frames per subject; DDP with 2 processes equals 1 process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark3dface.cli.main import main
from benchmark3dface.leaderboard import open_store

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NOW7_ROWS = (0, 1, 2, 3, 4, 5, 6)


def grid_face(scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 25x25 bump 'face' (mm): vertices, triangles, and 7 landmark vertices (NoW order:
    eye corners, nose bottom, mouth corners)."""
    n = 25
    y, x = np.mgrid[0:n, 0:n]
    x = (x - 12) * 7.0
    y = (y - 12) * 8.0
    z = 60.0 * np.exp(-(x ** 2 + y ** 2) / (2 * 45.0 ** 2)) + 6.0 * np.sin(x / 15.0) * np.cos(y / 21.0)
    v = np.stack([x, y, z * scale], -1).reshape(-1, 3)
    tri = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
            tri += [(a, b, c), (a, c, d)]
    rc = [(16, 5), (16, 10), (16, 14), (16, 19), (11, 12), (6, 8), (6, 16)]  # rows are +y up
    lm = np.array([r * n + c for r, c in rc])
    return v, np.array(tri), lm


def write_obj(path: Path, v: np.ndarray, tri: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(f"v {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n" for p in v)
        f.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in tri)


def rigid(v: np.ndarray, deg: float = 4.0, t=(3.0, -2.0, 5.0)) -> np.ndarray:
    a = np.deg2rad(deg)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return v @ r.T + np.asarray(t)


def image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)


def b3f(*args: str) -> int:
    return main(list(args))


@pytest.fixture
def now_fixture(tmp_path):
    """NoW layout (final_release_version) + a mesh folder: sample 0 exact (rigidly moved),
    sample 1 deformed, sample 2 has no mesh."""
    root = tmp_path / "now"
    v, tri, lm = grid_face()
    lines = []
    for k, subj in enumerate(("FaMoS_1", "FaMoS_2", "FaMoS_3")):
        rel = f"{subj}/selfie/IMG_{k}.jpg"
        image(root / "iphone_pictures" / rel, k)
        lines.append(rel)
        write_obj(root / "scans" / subj / "natural_head_rotation.000001.obj", v, tri)
        (root / "scans_lmks_onlypp" / subj).mkdir(parents=True)
        np.savetxt(root / "scans_lmks_onlypp" / subj / "lmks.txt", v[lm])
    (root / "imagepathsvalidation.txt").write_text("\n".join(lines) + "\n")
    meshes = tmp_path / "out"
    exact = rigid(v)
    write_obj(meshes / "FaMoS_1/selfie/IMG_0.obj", exact, tri)
    np.savetxt(meshes / "FaMoS_1/selfie/IMG_0.lm3d.txt", exact[lm])
    vd, _, _ = grid_face(scale=1.25)
    write_obj(meshes / "now/FaMoS_2/selfie/IMG_1.obj", rigid(vd), tri)  # with the dataset prefix
    np.savetxt(meshes / "now/FaMoS_2/selfie/IMG_1.lm3d.txt", rigid(vd)[lm])
    return root, meshes


def test_evaluate_mesh_folder_on_now(now_fixture, tmp_path, capsys):
    root, meshes = now_fixture
    db = str(tmp_path / "lb.sqlite")
    assert b3f("evaluate", "--data", f"now:{root}", "--meshes", str(meshes), "--name", "mine", "--db", db) == 0
    out = capsys.readouterr().out
    assert "1 failed" in out and "no mesh file" in out
    store = open_store(db)
    (run,) = store.runs(method="mine")
    assert run.protocol == "now" and run.dataset == "now"
    metric = next(m for m in store.per_sample_metrics(run.id) if "mean" in m or "median" in m)
    sv = store.sample_values(run.id, metric)
    vals = dict(zip(sv.ids.tolist(), sv.values.tolist()))
    assert vals["now/FaMoS_1/selfie/IMG_0"] < 0.05          # the exact mesh, moved rigidly
    assert vals["now/FaMoS_2/selfie/IMG_1"] > 0.5           # 25 % deeper
    assert list(sv.failures) == ["now/FaMoS_3/selfie/IMG_2"]
    # the row shows up on the board
    assert b3f("leaderboard", "--db", db) == 0
    assert "mine" in capsys.readouterr().out


def test_evaluate_bad_mesh_file_is_one_counted_line(now_fixture, tmp_path, capsys):
    root, meshes = now_fixture
    (meshes / "FaMoS_1/selfie/IMG_0.obj").write_text("v 1 2\nf 1 2 9\n")
    db = str(tmp_path / "lb.sqlite")
    assert b3f("evaluate", "--data", f"now:{root}", "--meshes", str(meshes), "--name", "bad", "--db", db) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "could not be read" in out.out and "IMG_0.obj" in out.out
    store = open_store(db)
    (run,) = store.runs(method="bad")
    failures = store.sample_values(run.id, store.per_sample_metrics(run.id)[0]).failures
    assert sorted(failures) == ["now/FaMoS_1/selfie/IMG_0", "now/FaMoS_3/selfie/IMG_2"]
    assert "IMG_0.obj" in failures["now/FaMoS_1/selfie/IMG_0"]


def test_evaluate_mesh_folder_on_micc_frames(tmp_path, capsys):
    root = tmp_path / "Florence"
    v, tri, _ = grid_face()
    meshes = tmp_path / "pred"
    for s, subj in enumerate(("subject_01", "subject_02")):
        write_obj(root / subj / "Model" / "frontal1" / "obj" / "scan.obj", v, tri)
        for k in range(12):
            image(root / subj / "Video" / "Indoor-Cooperative" / f"{k:04d}.png", 100 * s + k)
        for k in (0, 10):  # frame_stride 10 -> frames 0 and 10
            pred = rigid(v, deg=3.0 + k / 5) if s == 0 else rigid(grid_face(scale=1.3)[0])
            write_obj(meshes / "cooperative" / subj / f"{k:06d}.obj", pred, tri)
    db = str(tmp_path / "lb.sqlite")
    assert b3f("evaluate", "--data", f"micc:{root}", "--meshes", str(meshes), "--name", "m", "--db", db) == 0
    store = open_store(db)
    (run,) = store.runs(method="m")
    assert run.protocol == "micc"
    assert "rmse" in store.per_sample_metrics(run.id), store.per_sample_metrics(run.id)
    metric = "rmse"
    sv = store.sample_values(run.id, metric)
    vals = dict(zip(sv.ids.tolist(), sv.values.tolist()))
    assert len(vals) == 4 and not sv.failures  # two frames of two subjects
    assert vals["micc/cooperative/subject_01/000000"] < 0.05 < vals["micc/cooperative/subject_02/000000"]


@pytest.mark.skipif(not (SHARED / "aflw2000_sample").is_dir(), reason="../shared/data/aflw2000_sample not available")
def test_evaluate_method_on_real_aflw2000(tmp_path, capsys):
    db = str(tmp_path / "lb.sqlite")
    assert b3f("evaluate", "--data", f"aflw2000:{SHARED / 'aflw2000_sample'}", "--split", "all", "--method",
               "meanface", "--image-size", "224", "--db", db) == 0
    (run,) = open_store(db).runs(method="meanface")
    assert run.protocol == "aflw2000_nme" and run.config["inputs"]["landmarks"]["source"] == "detector"
    nme = run.metrics["nme_mean"] if "nme_mean" in run.metrics else next(iter(run.metrics.values()))
    assert nme.n + nme.n_failed == 8  # every image is accounted for
    assert 1.0 < nme.value < 30.0  # the mean face placed on detected landmarks: a few % NME
    assert b3f("evaluate", "--data", f"aflw2000:{SHARED / 'aflw2000_sample'}", "--split", "all", "--method",
               "meanface", "--image-size", "224", "--db", db, "--landmarks", "gt") == 0
    names = {r.method for r in open_store(db).runs()}
    assert names == {"meanface", "meanface[gt-landmarks]"}


def _sync_values(db: str, method: str) -> dict[str, dict[str, float]]:
    store = open_store(db)
    out = {}
    for run in store.runs(method=method):
        for metric in store.per_sample_metrics(run.id):
            sv = store.sample_values(run.id, metric)
            out[f"{run.protocol}/{metric}"] = dict(zip(sv.ids.tolist(), sv.values.tolist()))
    return out


def test_ddp_two_processes_equal_one(tmp_path):
    common = ["evaluate", "--data", "synthetic:single", "--size", "5", "--image-size", "64", "--method", "meanface",
              "--landmarks", "gt_noise", "--protocols", "true_error,aflw2000_nme", "--batch-size", "2",
              "--accelerator", "cpu", "--name", "m"]
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    for dev in ("1", "2"):
        out = subprocess.run([sys.executable, "-m", "benchmark3dface", *common, "--devices", dev, "--db",
                              str(tmp_path / f"lb{dev}.sqlite")], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"({dev} process(es))" in out.stdout  # really DDP with 2 ranks
    one, two = _sync_values(str(tmp_path / "lb1.sqlite"), "m"), _sync_values(str(tmp_path / "lb2.sqlite"), "m")
    assert one.keys() == two.keys() and one
    for key in one:
        assert one[key].keys() == two[key].keys() and len(one[key]) == 5, key
        for sid, val in one[key].items():
            assert two[key][sid] == pytest.approx(val, rel=1e-6, abs=1e-9), (key, sid)
