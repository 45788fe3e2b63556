"""The model zoo: a tiny recipe trained in seconds into a temp zoo (interrupted and resumed:
the same weights as an uninterrupted run), its export (weights-only file, manifest), `verify`
(and what it catches), the CLI, and the benchmark runner's ``<name>@zoo`` row. The committed
entries of the repository's zoo/ are checked by tests/zoo/test_committed_zoo.py."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("b3f_methods.deep3d", reason="the built-in method plugins are not installed")

from benchmark3dface.cli.zoo import add_parser, run  # noqa: E402
from benchmark3dface.zoo import load_entry_model, load_recipe, verify_entry, zoo_entries  # noqa: E402
from benchmark3dface.zoo.entries import FORMAT, MANIFEST_FIELDS, sha256_of  # noqa: E402
from benchmark3dface.zoo.train import train  # noqa: E402

TINY = """
seed_everything: 0
zoo:
  method: deep3d
  checkpoint_every_steps: 2
  log_every_seconds: 0
  fp16: true
  max_mb: 25
  validation: {mode: single, size: 4, image_size: 32, seed: 77, batch_size: 4}
  tolerance_mm: 0.001
model:
  class_path: b3f_methods.deep3d.Deep3D
  init_args: {backbone: resnet10t, image_size: 32, lr: 1.0e-3, perceptual: none, landmark_high_weight: 1.0}
data:
  class_path: benchmark3dface.data.datamodules.SyntheticDataModule
  init_args: {mode: single, image_size: 32, train_size: 64, val_size: 2, test_size: 0, batch_size: 2, num_workers: 0}
trainer:
  accelerator: cpu
  max_steps: 4
  limit_val_batches: 0
  num_sanity_val_steps: 0
  log_every_n_steps: 1
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny recipe trained 2 steps, interrupted, resumed to 4 (exported) -- and the same
    recipe trained 4 steps straight, for comparison."""
    root = tmp_path_factory.mktemp("zoo")
    recipe_path = root / "tiny.yaml"
    recipe_path.write_text(TINY)
    recipe = load_recipe(recipe_path)
    torch.set_num_threads(1)
    assert train(recipe, work_dir=root / "work", zoo_dir=root / "zoo", max_steps=2) is None  # paused
    assert not (root / "zoo" / "tiny.pt").exists()
    entry = train(recipe, work_dir=root / "work", zoo_dir=root / "zoo")  # resumes 2 -> 4, exports
    straight = train(recipe, work_dir=root / "work2", zoo_dir=root / "zoo2")
    return root, recipe, entry, straight


def test_resume_continues_exactly(trained) -> None:
    root, _, entry, straight = trained
    a = torch.load(entry.weights_path, weights_only=True)["state_dict"]
    b = torch.load(straight.weights_path, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # interrupted + resumed == uninterrupted
    log = (root / "work" / "tiny" / "train.log").read_text()
    assert "started at step 0/4" in log and "session step limit 2 reached" in log and "resumed at step 2/4" in log
    assert "ETA" in log
    assert "finished: exported" in log
    # the trainings did learn something: the weights moved off the zero-initialised head
    assert any(float(v.float().abs().sum()) > 0 for k, v in a.items() if "head" in k)


def test_export_and_manifest(trained) -> None:
    _, recipe, entry, _ = trained
    m = json.loads(entry.manifest_path.read_text())
    assert set(MANIFEST_FIELDS) <= set(m)
    assert m["sha256"] == sha256_of(entry.weights_path) and m["bytes"] == entry.weights_path.stat().st_size
    assert m["steps"] == 4 and m["wall_time_s"] > 0 and m["recipe"]["sha256"] == recipe.text_sha256
    assert m["dtype"] == "float16" and m["validation"]["n"] + m["validation"]["n_failed"] == 4
    assert math.isfinite(m["validation"]["true_error_mm"])
    blob = torch.load(entry.weights_path, weights_only=True)  # tensors and plain values only
    assert blob["format"] == FORMAT and blob["method"] == "deep3d"
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    assert [e.name for e in zoo_entries(entry.manifest_path.parent)] == ["tiny"]
    model = load_entry_model(entry)
    assert not model.training


def test_verify_reproduces_and_catches_tampering(trained, tmp_path: Path) -> None:
    _, _, entry, _ = trained
    assert verify_entry(entry) == []  # the recorded validation error is reproduced
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(entry.manifest_path.parent, zoo)
    (bad,) = zoo_entries(zoo)
    bad.manifest["validation"]["true_error_mm"] += 0.5
    bad.manifest_path.write_text(json.dumps(bad.manifest))
    (bad,) = zoo_entries(zoo)
    problems = verify_entry(bad)
    assert len(problems) == 1 and "validation true error" in problems[0] and "tolerance" in problems[0]
    raw = bytearray(bad.weights_path.read_bytes())
    raw[-100] ^= 0xFF
    bad.weights_path.write_bytes(bytes(raw))
    (problem,) = verify_entry(bad, recompute=False)
    assert "sha256" in problem and "tiny.pt" in problem


def _b3f(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="b3f")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func is run
    return args.func(args)


def test_cli_list_and_verify(trained, capsys: pytest.CaptureFixture[str]) -> None:
    root, recipe, entry, _ = trained
    zoo = str(entry.manifest_path.parent)
    assert _b3f(["zoo", "list", "--zoo-dir", zoo, "--work-dir", str(root / "work")]) == 0
    out = capsys.readouterr().out
    assert "tiny@zoo" in out and "4 steps" in out and entry.manifest["sha256"][:12] in out
    assert _b3f(["zoo", "verify", "--zoo-dir", zoo, "--no-recompute"]) == 0
    assert "ok   tiny" in capsys.readouterr().out
    assert _b3f(["zoo", "verify", "nothere", "--zoo-dir", zoo]) == 1
    with pytest.raises(FileNotFoundError, match="no zoo recipe named 'nothere'"):
        _b3f(["zoo", "train", "nothere", "--foreground"])


def test_repository_recipes_parse() -> None:
    for name in ("deep3d", "deep3d_cnet"):
        r = load_recipe(name)
        assert r.method == name and r.max_steps > 0 and r.fp16 and r.max_mb <= 25
    assert load_recipe("deep3d_cnet").model_args["rnet_checkpoint"] == "zoo:deep3d"


def test_runner_evaluates_zoo_entry_as_its_own_row(trained, tmp_path: Path) -> None:
    from benchmark3dface.benchmark.profile import BenchmarkProfile, TestSet
    from benchmark3dface.benchmark.runner import BenchmarkRunner
    from benchmark3dface.leaderboard import ResultsStore

    _, _, entry, _ = trained
    profile = BenchmarkProfile(test_sets={"single": TestSet(size=2, image_size=32, batch_size=2)},
                               protocols={"single": ["true_error"]}, gallery=0)
    with ResultsStore(tmp_path / "lb.sqlite") as store:
        runner = BenchmarkRunner(profile, store, tmp_path / "out", progress=False, use_wandb=False,
                                 zoo_dir=entry.manifest_path.parent)
        assert any("tiny@zoo" in line for line in runner.plan(["deep3d"]))
        (out,) = runner.run_zoo(["deep3d"])
        assert out.status == "done" and out.method == "tiny@zoo", out.message
        (stored,) = store.runs(method="tiny@zoo")
        assert stored.config["zoo"]["sha256"] == entry.manifest["sha256"]
        assert stored.metrics["mean"].n + stored.metrics["mean"].n_failed == 2
        assert runner.run_zoo(["fitting"]) == []  # only the selected methods' entries
        (again,) = runner.run_zoo(["deep3d"])
        assert again.status == "skipped"


def test_background_training_is_detached_and_resumable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`b3f zoo train` returns at once; the detached process trains to its session limit, saves
    and exits; `b3f zoo list` then shows the run paused at that step."""
    import time

    from benchmark3dface.zoo.train import progress_of, running_pid

    (tmp_path / "tiny.yaml").write_text(TINY)
    recipe = load_recipe(tmp_path / "tiny.yaml")
    work = str(tmp_path / "work")
    argv = ["zoo", "train", str(tmp_path / "tiny.yaml"), "--work-dir", work, "--zoo-dir", str(tmp_path / "zoo"),
            "--max-steps", "1"]
    assert _b3f(argv) == 0
    assert "in the background (pid" in capsys.readouterr().out
    deadline = time.time() + 120
    while running_pid(recipe, work) is not None and time.time() < deadline:
        time.sleep(0.5)
    state = progress_of(recipe, work)
    assert state["state"] == "paused" and state["step"] == 1, (tmp_path / "work" / "tiny" / "train.log").read_text()
    assert (tmp_path / "work" / "tiny" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "zoo" / "tiny.pt").exists()  # exported only at the recipe's max_steps
