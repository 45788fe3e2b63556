"""A resumed fit continues its CSV log version: one ``metrics.csv`` with every step once, equal
to the uninterrupted run's, through ``b3f fit --ckpt_path last`` and through the benchmark
runner's ``default_loggers(resume_from=...)``."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from benchmark3dface.cli.main import main
from benchmark3dface.training.loggers import (CHECKPOINT_KEY, LogVersionCheckpoint, ResumedCSVLogger,
                                              checkpoint_log_version, default_loggers, existing_versions)
from cli_tiny import CrashAt, TinyData, TinyRegression, write_config

CRASH = "    - class_path: cli_tiny.CrashAt\n      init_args: {step: 9}\n"


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def series(table: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in table if r.get(key)]


def assert_same_history(resumed: list[dict[str, str]], full: list[dict[str, str]]) -> None:
    for key in ("train_loss", "val_loss"):
        a, b = series(resumed, key), series(full, key)
        assert [s for s, _ in a] == [s for s, _ in b], key  # every step once, none lost
        assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-6, abs=1e-9), key


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("B3F_DEBUG", raising=False)
    return tmp_path


def test_cli_resume_continues_the_csv_version(cli_env, capsys, monkeypatch):
    tmp = cli_env
    # the reference: 12 uninterrupted steps, in a folder of its own
    ref = tmp / "ref"
    ref.mkdir()
    cfg = write_config(ref / "cfg.yaml", ref / "ck", max_steps=12)
    monkeypatch.chdir(ref)
    assert main(["fit", "--config", cfg]) == 0
    full = rows(ref / "runs/lightning/b3f/version_0/metrics.csv")
    # the interrupted run: checkpoints every 3 optimizer steps, crashes in step 9: its rows reach
    # log step 7, the last checkpoint holds 6 steps (log steps 0..5), so rows 6 and 7 are logged again
    run = tmp / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    crash_cfg = write_config(run / "crash.yaml", run / "ck", max_steps=12, extra_callbacks=CRASH)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["fit", "--config", crash_cfg])
    log = run / "runs/lightning/b3f/version_0/metrics.csv"
    before = rows(log)
    assert max(int(r["step"]) for r in before) == 7
    another = write_config(run / "other.yaml", run / "ck_other", max_steps=2)
    assert main(["fit", "--config", another]) == 0  # an unrelated run takes version_1 meanwhile
    capsys.readouterr()
    assert main(["fit", "--config", write_config(run / "cfg.yaml", run / "ck", max_steps=12),
                 "--ckpt_path", "last"]) == 0
    err = capsys.readouterr().err
    assert "CSV log continues" in err and "version_0" in err
    assert sorted(p.name for p in (run / "runs/lightning/b3f").iterdir()) == ["version_0", "version_1"]
    assert_same_history(rows(log), full)


def test_runner_style_resume_with_and_without_the_recorded_version(tmp_path):
    """What the benchmark runner does: default_loggers(run_dir, name, resume_from=last)."""

    def fit(run_dir: Path, crash: bool, record: bool):
        last = run_dir / "checkpoints" / "last.ckpt"
        resume = str(last) if last.is_file() else None
        cbs = [ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), save_last=True, every_n_train_steps=3,
                               save_top_k=0)]
        cbs += [LogVersionCheckpoint()] if record else []
        cbs += [CrashAt(9)] if crash else []
        L.seed_everything(0, verbose=False)
        trainer = L.Trainer(max_steps=12, accelerator="cpu", log_every_n_steps=1, val_check_interval=5,
                            check_val_every_n_epoch=None, num_sanity_val_steps=0, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=cbs,
                            logger=default_loggers(run_dir, "tiny", use_wandb=False, resume_from=resume))
        trainer.fit(TinyRegression(), TinyData(), ckpt_path=resume, weights_only=True)

    fit(tmp_path / "ref", crash=False, record=True)
    full = rows(tmp_path / "ref/tiny/version_0/metrics.csv")
    for record in (True, False):
        run_dir = tmp_path / f"run_{record}"
        with pytest.raises(RuntimeError, match="simulated crash"):
            fit(run_dir, crash=True, record=record)
        fit(run_dir, crash=False, record=record)
        assert existing_versions(run_dir / "tiny") == [0]
        assert_same_history(rows(run_dir / "tiny/version_0/metrics.csv"), full)


def test_checkpoint_log_version_sources(tmp_path):
    import torch

    root = tmp_path / "runs" / "b3f"
    recorded = tmp_path / "elsewhere" / "last.ckpt"
    recorded.parent.mkdir()
    torch.save({CHECKPOINT_KEY: {"csv_root": str(root.resolve()), "csv_version": 4}}, recorded)
    assert checkpoint_log_version(recorded, root) == 4
    assert checkpoint_log_version(recorded, tmp_path / "runs" / "other") is None  # recorded for another log
    in_version = root / "version_2" / "checkpoints" / "epoch=0.ckpt"
    in_version.parent.mkdir(parents=True)
    torch.save({"state_dict": {}}, in_version)
    assert checkpoint_log_version(in_version, root) == 2  # Lightning's default checkpoint folder
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    assert checkpoint_log_version(plain, root) is None
    (root / "version_0").mkdir()
    (root / "version_7").mkdir()
    (root / "notes").mkdir()
    assert existing_versions(root) == [0, 2, 7]
    guessed = default_loggers(tmp_path / "runs", "b3f", use_wandb=False, resume_from=plain)[0]
    assert isinstance(guessed, ResumedCSVLogger) and guessed.version == 7
    fresh = default_loggers(tmp_path / "runs", "b3f", use_wandb=False)[0]
    assert not isinstance(fresh, ResumedCSVLogger) and fresh.version == 8
