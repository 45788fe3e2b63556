"""The real-photo training config (experiments/photos/deep3d_dlib.yaml): Deng's R-Net with dlib's
face-recognition ResNet as the perceptual encoder trains on a folder of real photos, each one
detected, aligned with its 5 points and given 68 detected landmarks by PhotoAlignCrop.

Runs ``b3f fit`` in-process on the 10 photos of ../shared/data/photos_5pt for 3 steps (about 20 s
on one core); skips when the photos or the converted networks are absent."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch

from benchmark3dface.weights import available

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "experiments" / "photos" / "deep3d_dlib.yaml"
NETWORKS = ("dlib_resnet", "blazeface", "faceapi_landmark68")

sys.path.insert(0, str(ROOT / "tests" / "training"))
from cli_helpers import run_b3f  # noqa: E402


def _need_networks() -> None:
    missing = [n for n in NETWORKS if not available(n)]
    if missing:
        pytest.skip(f"converted weights {missing} are not cached (run: b3f weights fetch {' '.join(missing)})")


def _metric_rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss")]


def test_deep3d_dlib_config_trains_on_a_photo_folder(shared_data, tmp_path):
    photos = shared_data("photos_5pt")
    _need_networks()
    code, out, err = run_b3f(["fit", "--config", str(CONFIG), "--data.init_args.root", str(photos),
                              "--data.init_args.num_workers", "0", "--trainer.max_steps", "3",
                              "--trainer.log_every_n_steps", "1", "--trainer.accelerator", "cpu"], tmp_path)
    assert code == 0, (out + err)[-3000:]

    logs = sorted((tmp_path / "runs" / "lightning").rglob("metrics.csv"))
    assert len(logs) == 1, logs
    rows = _metric_rows(logs[0])
    assert [int(r["step"]) for r in rows] == [0, 1, 2]  # one row per training step
    for r in rows:
        loss = float(r["train/loss"])
        assert math.isfinite(loss) and loss > 0.0, r
        # the perceptual term is on (dlib encoder) and a real identity distance, 1 - cos in (0, 2]
        assert r.get("train/perceptual") not in (None, ""), f"no perceptual term logged: {r}"
        assert 0.0 < float(r["train/perceptual"]) <= 2.0, r
        # the landmark term ran on the detected 68 points
        assert math.isfinite(float(r["train/landmark"])) and float(r["train/landmark"]) > 0.0, r
        assert float(r["train/photo"]) > 0.0, r
    with open(logs[0], newline="") as f:
        skipped = [float(r["data/skipped_train"]) for r in csv.DictReader(f) if r.get("data/skipped_train")]
    assert skipped and all(s == 0.0 for s in skipped), "a real photo was skipped by the preprocessing"

    ckpt = tmp_path / "runs" / "deep3d_photos" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.ckpt"))
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert blob["global_step"] == 3
    assert blob["hyper_parameters"]["perceptual"] == "dlib"
    assert blob["config_warnings"] == []  # nothing switched the perceptual term off
    assert any(k.startswith("rnet.") for k in blob["state_dict"])
    assert not any("encoder" in k for k in blob["state_dict"])  # the frozen encoder stays out
