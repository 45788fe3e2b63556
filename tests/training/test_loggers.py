"""default_loggers: a CSV logger always, wandb offline unless the user has set wandb up."""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from benchmark3dface.training import default_loggers, wandb_mode


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc with a wandb login
    (tmp_path / "home").mkdir()
    return tmp_path


def test_offline_wandb_without_credentials(clean_env):
    assert wandb_mode() == "offline"
    loggers = default_loggers(clean_env / "runs", "exp", version="v0")
    assert [type(lg) for lg in loggers] == [CSVLogger, WandbLogger]
    csv, wb = loggers
    assert wb._offline is True
    assert csv.log_dir.startswith(str(clean_env / "runs"))
    assert (clean_env / "runs").is_dir()


def test_online_with_api_key_or_login(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    assert default_loggers(clean_env / "runs", "exp")[1]._offline is False
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = clean_env / "home" / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_mode() == "online"


@pytest.mark.parametrize("mode", ["disabled", "DISABLED"])
def test_disabled_keeps_csv_only(clean_env, monkeypatch, mode):
    monkeypatch.setenv("WANDB_MODE", mode)
    loggers = default_loggers(clean_env / "runs", "exp")
    assert [type(lg) for lg in loggers] == [CSVLogger]


def test_explicit_offline_beats_a_key(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert default_loggers(clean_env / "runs", "exp")[1]._offline is True
    assert [type(lg) for lg in default_loggers(clean_env / "r2", "exp", use_wandb=False)] == [CSVLogger]
