"""Checkpoint loads: every load in the project passes ``weights_only``; an untrusted, empty,
foreign or truncated checkpoint is refused by ``b3f fit|validate|test|predict`` in one line
naming the file (exit status 2, no traceback), and nothing in it is executed."""

from __future__ import annotations

import ast
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from benchmark3dface.cli.main import main
from benchmark3dface.training.checkpoints import (CheckpointReadError, UntrustedCheckpointError, load_checkpoint,
                                                  refused_global)
from cli_tiny import write_config

ROOT = Path(__file__).resolve().parents[2]
TRAINER_LOADS = {"fit", "validate", "test", "predict"}


# ----------------------------------------------------------------------------- every load
def loads_without_weights_only(source: str, filename: str = "<src>") -> list[str]:
    """Calls that load a checkpoint without an explicit ``weights_only``: ``torch.load(...)``,
    ``X.load_from_checkpoint(...)`` and ``trainer.fit|validate|test|predict(..., ckpt_path=...)``
    (a ``**kwargs`` call is given the benefit of the doubt)."""
    found = []
    with warnings.catch_warnings():  # e.g. an invalid escape in some docstring is not our business here
        warnings.simplefilter("ignore")
        tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        kws = {k.arg for k in node.keywords}
        f = node.func
        if f.attr == "load" and isinstance(f.value, ast.Name) and f.value.id == "torch":
            what = "torch.load"
        elif f.attr == "load_from_checkpoint":
            what = "load_from_checkpoint"
        elif f.attr in TRAINER_LOADS and "ckpt_path" in kws:
            what = f"{f.attr}(ckpt_path=...)"
        else:
            continue
        if "weights_only" not in kws and None not in kws:
            found.append(f"{filename}:{node.lineno}: {what}")
    return found


def test_the_scanner_finds_loads_without_weights_only():
    code = ("import torch\n"
            "a = torch.load(p)\n"
            "b = torch.load(p, weights_only=True)\n"
            "m = M.load_from_checkpoint(p, map_location='cpu')\n"
            "trainer.fit(m, dm, ckpt_path='last')\n"
            "trainer.test(m, ckpt_path=p, weights_only=True)\n"
            "trainer.fit(m, dm)\n"
            "torch.jit.load(p)\n")
    assert [s.split(": ")[1] for s in loads_without_weights_only(code)] == [
        "torch.load", "load_from_checkpoint", "fit(ckpt_path=...)"]


def test_every_checkpoint_load_in_the_project_passes_weights_only():
    offenders = []
    for folder in ("src", "methods", "benchmarks", "tests", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            offenders += loads_without_weights_only(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert offenders == [], "checkpoint loads without an explicit weights_only:\n" + "\n".join(offenders)


# ----------------------------------------------------------------------------- bad files
class Payload:
    """Unpickling this would create ``marker``: proof that nothing in a refused file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def bad_checkpoints(tmp_path):
    marker = tmp_path / "EXECUTED"
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 3}, good)
    files = {"good": good, "untrusted": tmp_path / "untrusted.ckpt", "empty": tmp_path / "empty.ckpt",
             "text": tmp_path / "text.ckpt", "truncated": tmp_path / "truncated.ckpt"}
    torch.save({"state_dict": {}, "x": Payload(marker)}, files["untrusted"])
    files["empty"].write_bytes(b"")
    files["text"].write_text("model weights\n" * 20)
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return files, marker


def test_load_checkpoint_errors(bad_checkpoints, tmp_path):
    files, marker = bad_checkpoints
    assert load_checkpoint(files["good"])["global_step"] == 3
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(legacy)["w"], torch.zeros(2))
    expect = {"untrusted": (UntrustedCheckpointError, "not a trusted checkpoint"),
              "empty": (CheckpointReadError, "empty file (0 bytes)"),
              "text": (CheckpointReadError, "not a PyTorch checkpoint"),
              "truncated": (CheckpointReadError, "truncated or corrupt checkpoint")}
    for name, (cls, words) in expect.items():
        with pytest.raises(cls) as e:
            load_checkpoint(files[name])
        assert str(e.value).startswith(f"{files[name]}: {words}") and "\n" not in str(e.value), name
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "absent.ckpt")
    assert not marker.exists()
    # what was refused, read from torch's message
    with pytest.raises(pickle.UnpicklingError) as raw:
        torch.load(files["untrusted"], weights_only=True)
    assert refused_global(raw.value).startswith("Unsupported global")
    assert refused_global(ValueError("something else")) is None


@pytest.mark.parametrize("subcommand,name,words", [
    ("fit", "untrusted", "not a trusted checkpoint: weights_only loading refuses it (Unsupported global"),
    ("validate", "untrusted", "not a trusted checkpoint"),
    ("test", "text", "not a PyTorch checkpoint"),
    ("predict", "truncated", "truncated or corrupt checkpoint"),
    ("fit", "empty", "empty file (0 bytes)"),
])
def test_cli_refuses_bad_checkpoints_in_one_line(subcommand, name, words, bad_checkpoints, tmp_path, monkeypatch,
                                                 capsys):
    files, marker = bad_checkpoints
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("B3F_DEBUG", raising=False)
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path / "ck")
    rc = main([subcommand, "--config", cfg, "--ckpt_path", str(files[name])])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err + out
    lines = [ln for ln in err.splitlines() if ln.startswith(f"b3f {subcommand}: error:")]
    assert len(lines) == 1 and f"{files[name]}: {words}" in lines[0]
    assert not marker.exists()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("metrics.csv"))  # nothing ran


def test_cli_missing_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("B3F_DEBUG", raising=False)
    rc = main(["validate", "--config", write_config(tmp_path / "cfg.yaml", tmp_path / "ck"),
               "--ckpt_path", str(tmp_path / "nope.ckpt")])
    _, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err and "nope.ckpt not found" in err


def test_debug_mode_shows_the_traceback(bad_checkpoints, tmp_path, monkeypatch):
    files, _ = bad_checkpoints
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("B3F_DEBUG", "1")
    with pytest.raises(UntrustedCheckpointError):
        main(["fit", "--config", write_config(tmp_path / "cfg.yaml", tmp_path / "ck"),
              "--ckpt_path", str(files["untrusted"])])
    assert os.environ["B3F_DEBUG"] == "1"
