"""The wandb sweep config of the quick R-Net profile: one sampled parameter set becomes the
command ``wandb agent`` would run, and b3f's LightningCLI accepts every swept key with the
sampled value (checked offline: wandb disabled, nothing instantiated)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark3dface.training.sweeps import (
    agent_command,
    lightning_argv,
    load_sweep_config,
    lookup,
    sample_parameters,
    sample_value,
    validate_sweep_config,
)

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "experiments" / "sweeps" / "deep3d_quick.yaml"


@pytest.fixture(scope="module")
def sweep():
    return load_sweep_config(SWEEP)


def test_sweep_config_shape(sweep):
    assert sweep["method"] in ("random", "bayes")
    assert sweep["metric"]["name"] == "val/true_error_mm" and sweep["metric"]["goal"] == "minimize"
    cmd = sweep["command"]
    assert cmd[cmd.index("b3f") + 1] == "fit" and "${args}" in cmd
    config = cmd[cmd.index("--config") + 1]
    assert (ROOT / config).is_file()
    for name in sweep["parameters"]:
        assert name.split(".")[0] in ("model", "data", "trainer"), name


def test_agent_command_matches_wandb_expansion(sweep):
    params = sample_parameters(sweep, seed=3)
    cmd = agent_command(sweep, params)
    assert cmd[:2] == ["/usr/bin/env", "b3f"]
    flags = [c for c in cmd if c.startswith("--") and "=" in c]
    assert flags == [f"--{k}={v}" for k, v in params.items()]  # wandb's ${args}: --key=value, in order


def test_every_swept_key_is_accepted_by_lightning_cli(sweep, tmp_path):
    from benchmark3dface.training.sweeps import check_lightning_argv

    params = sample_parameters(sweep, seed=0)
    argv = lightning_argv(agent_command(sweep, params))
    assert argv[0] == "fit"
    cfg = check_lightning_argv(argv, root=ROOT, cwd=tmp_path)
    for key, value in params.items():
        got = lookup(cfg, key)
        assert got == value or float(got) == pytest.approx(float(value), rel=1e-12), (key, got, value)
    base = yaml.safe_load((ROOT / "experiments" / "quick" / "deep3d.yaml").read_text())
    assert cfg["model"]["class_path"] == base["model"]["class_path"]  # the sweep's values on top of the profile


def test_a_rejected_key_is_reported(tmp_path):
    from benchmark3dface.training.sweeps import check_lightning_argv

    with pytest.raises(ValueError, match="not_an_option|rejected"):
        check_lightning_argv(["fit", "--config", "experiments/quick/deep3d.yaml", "--model.init_args.not_an_option=1"],
                             root=ROOT, cwd=tmp_path, in_process=True)
    cfg = check_lightning_argv(["fit", "--config", "experiments/quick/deep3d.yaml", "--model.init_args.lr=0.25"],
                               root=ROOT, cwd=tmp_path, in_process=True)
    assert lookup(cfg, "model.init_args.lr") == 0.25


def test_sampling_follows_the_distributions():
    import random

    rng = random.Random(0)
    logs = [sample_value({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}, rng) for _ in range(400)]
    assert all(1e-4 <= v <= 1e-2 for v in logs)
    assert 0.35 < sum(v < 1e-3 for v in logs) / len(logs) < 0.65  # log-uniform: half below the geometric mean
    ints = {sample_value({"distribution": "int_uniform", "min": 2, "max": 4}, rng) for _ in range(100)}
    assert ints == {2, 3, 4}
    assert {sample_value({"values": ["a", "b"]}, rng) for _ in range(50)} == {"a", "b"}
    assert sample_value({"value": 7}, rng) == 7
    q = sample_value({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2.5}, rng)
    assert q % 2.5 == 0


@pytest.mark.parametrize("bad,match", [
    ({"method": "grid-ish", "parameters": {"a": {"value": 1}}, "command": ["${args}"]}, "method"),
    ({"method": "bayes", "parameters": {"a": {"value": 1}}, "command": ["${args}"]}, "metric"),
    ({"method": "random", "parameters": {"a": {"values": [None, 1]}}, "command": ["${args}"]}, "None"),
    ({"method": "random", "parameters": {"a": {"distribution": "uniform", "min": 2, "max": 1}},
      "command": ["${args}"]}, "min < max"),
    ({"method": "random", "parameters": {"a": {"parameters": {"b": {"value": 1}}}}, "command": ["${args}"]}, "dotted"),
    ({"method": "random", "parameters": {"a": {"value": 1}}, "command": ["b3f", "fit"]}, "args"),
])
def test_bad_sweep_configs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_sweep_config(bad)


def test_missing_sweep_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_sweep_config(tmp_path / "nope.yaml")
