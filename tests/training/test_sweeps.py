"""``b3f sweep``: a wandb sweep YAML run offline with Optuna.

The wandb distributions map onto Optuna's samplers with wandb's semantics, grid search covers
the grid, ``early_terminate: hyperband`` prunes through the trial callback, the sweep file of the
quick R-Net expands to commands LightningCLI accepts, and a 3-trial sweep of a tiny config runs
end to end (each trial a ``b3f fit`` subprocess) with the best trial being the one whose
recorded metric is lowest."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from benchmark3dface.training.sweeps import (  # noqa: E402
    dry_run,
    grid_values,
    load_sweep_config,
    make_pruner,
    make_sampler,
    run_optuna,
    run_wandb,
    suggest_parameters,
    trial_argv,
    validate_sweep_config,
    wandb_commands,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from cli_helpers import print_config, run_b3f  # noqa: E402

ROOT = HERE.parents[1]
SWEEP = ROOT / "experiments" / "sweeps" / "deep3d_quick.yaml"


def _study(config, seed=0):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=make_sampler(config, seed))


def _draws(spec, n=400, method="random"):
    config = {"method": method, "parameters": {"p": spec}, "command": ["b3f", "fit", "${args}"]}
    study = _study(config)
    return [suggest_parameters(study.ask(), config)["p"] for _ in range(n)]


def test_sweep_file_shape():
    sweep = load_sweep_config(SWEEP)
    assert sweep["method"] == "bayes" and isinstance(make_sampler(sweep), optuna.samplers.TPESampler)
    assert sweep["metric"] == {"name": "val/true_error_mm", "goal": "minimize"}
    assert sweep["early_terminate"]["type"] == "hyperband"
    cmd = sweep["command"]
    assert cmd[cmd.index("b3f") + 1] == "fit" and "${args}" in cmd
    assert (ROOT / cmd[cmd.index("--config") + 1]).is_file()
    for name in sweep["parameters"]:
        assert name.split(".")[0] in ("model", "data", "trainer"), name


def test_trial_command_is_the_wandb_agent_expansion(tmp_path):
    """The same ``--key=value`` words ``wandb agent`` puts in ``${args}`` (wandb's own function)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    sweep = load_sweep_config(SWEEP)
    params = suggest_parameters(_study(sweep, seed=3).ask(), sweep)
    argv = trial_argv(sweep, params, root=ROOT)
    wandb_args = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args"]
    assert argv == ["fit", "--config", str(ROOT / "experiments/quick/deep3d.yaml"), *wandb_args]


def test_wandb_distributions_map_to_optuna():
    logs = _draws({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2})
    assert all(1e-4 <= v <= 1e-2 for v in logs)
    assert 0.4 < sum(v < 1e-3 for v in logs) / len(logs) < 0.6  # log-uniform: half below the geometric mean
    nat = _draws({"distribution": "log_uniform", "min": 0.0, "max": 2.0}, n=200)  # bounds are natural logs
    assert all(1.0 <= v <= math.e ** 2 for v in nat) and 0.35 < sum(v < math.e for v in nat) / 200 < 0.65
    assert set(_draws({"distribution": "int_uniform", "min": 2, "max": 4}, n=60)) == {2, 3, 4}
    assert set(_draws({"values": ["a", "b"]}, n=40)) == {"a", "b"}
    assert set(map(tuple, _draws({"values": [[1, 2], [3]]}, n=40))) == {(1, 2), (3,)}  # non-scalar choices
    assert _draws({"value": 7}, n=3) == [7, 7, 7]
    qs = _draws({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2.5}, n=100)
    assert all(abs(v / 2.5 - round(v / 2.5)) < 1e-9 and 0 <= v <= 10 for v in qs)
    normal = _draws({"distribution": "normal", "mu": 5.0, "sigma": 2.0}, n=2000)
    mean = sum(normal) / len(normal)
    std = math.sqrt(sum((v - mean) ** 2 for v in normal) / len(normal))
    assert abs(mean - 5.0) < 0.2 and abs(std - 2.0) < 0.2


def test_grid_search_covers_the_grid_once():
    config = {"method": "grid", "metric": {"name": "m"}, "command": ["b3f", "fit", "${args}"],
              "parameters": {"a": {"values": [1, 2]}, "b": {"distribution": "int_uniform", "min": 0, "max": 2},
                             "c": {"value": "fixed"}}}
    assert grid_values("b", config["parameters"]["b"]) == [0, 1, 2]
    study = _study(config)
    seen = []
    study.optimize(lambda t: seen.append(tuple(suggest_parameters(t, config).values())) or 0.0, n_trials=20)
    assert sorted(seen) == [(a, b, "fixed") for a in (1, 2) for b in (0, 1, 2)]  # the grid, then the study stops
    with pytest.raises(ValueError, match="continuous"):
        make_sampler(dict(config, parameters={"x": {"distribution": "uniform", "min": 0, "max": 1}}))


@pytest.mark.parametrize("min_iter", [1, 2])
def test_hyperband_prunes_a_bad_trial_at_min_iter(tmp_path, min_iter):
    """One Hyperband bracket (max_iter < min_iter * eta): a trial whose first rung value
    (validation ``min_iter``) is the worst of 7 is stopped there, the best one is not."""
    from benchmark3dface.training.sweep_trial import SweepTrialReporter

    et = {"type": "hyperband", "min_iter": min_iter, "max_iter": min_iter * 2, "eta": 3}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=url, study_name="s", pruner=make_pruner(et))
    for value in range(1, 7):  # six finished competitors (the pruner records the rungs they reached)
        t = study.ask()
        for step in range(1, min_iter * 2 + 1):
            t.report(float(value), step)
            t.should_prune()
        study.tell(t, float(value))

    def validate(value, n):
        trial = study.ask()
        cb = SweepTrialReporter(str(tmp_path / f"t{trial.number}.json"), "val/m", url, "s", trial._trial_id, et)
        trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=0, should_stop=False,
                                  callback_metrics={}, datamodule=None,
                                  strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj))
        stopped_at = None
        for i in range(1, n + 1):
            trainer.global_step, trainer.callback_metrics = 10 * i, {"val/m": value}
            cb.on_validation_end(trainer, object())
            if trainer.should_stop and stopped_at is None:
                stopped_at = i
        record = json.loads((tmp_path / f"t{trial.number}.json").read_text())
        assert record["values"][0] == [10, value] and record["pruned"] == (stopped_at is not None)
        return stopped_at

    assert validate(100.0, min_iter) == min_iter  # worst: pruned at its first rung, not before
    assert validate(0.5, min_iter) is None  # best: promoted


@pytest.mark.parametrize("bad,match", [
    ({"method": "grid-ish", "parameters": {"a": {"value": 1}}, "command": ["${args}"]}, "method"),
    ({"method": "bayes", "parameters": {"a": {"value": 1}}, "command": ["${args}"]}, "metric"),
    ({"method": "random", "parameters": {"a": {"values": [None, 1]}}, "command": ["${args}"]}, "None"),
    ({"method": "random", "parameters": {"a": {"distribution": "uniform", "min": 2, "max": 1}},
      "command": ["${args}"]}, "min < max"),
    ({"method": "random", "parameters": {"a": {"distribution": "beta"}}, "command": ["${args}"]}, "not supported"),
    ({"method": "random", "parameters": {"a": {"parameters": {"b": {"value": 1}}}}, "command": ["${args}"]}, "dotted"),
    ({"method": "random", "parameters": {"a": {"value": 1}}, "command": ["b3f", "fit"]}, "args"),
    ({"method": "random", "parameters": {"a": {"value": 1}}, "command": ["${args}"],
      "early_terminate": {"type": "envelope"}}, "hyperband"),
    ({"method": "random", "parameters": {"a": {"value": 1}}, "command": ["${args}"],
      "early_terminate": {"type": "hyperband", "min_iter": 0}}, "min_iter"),
])
def test_bad_sweep_configs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_sweep_config(bad)


def test_a_command_without_lightning_subcommand_is_rejected():
    config = validate_sweep_config({"method": "random", "parameters": {"a": {"value": 1}},
                                    "command": ["python", "train.py", "${args}"]})
    with pytest.raises(ValueError, match="runs no b3f fit"):
        trial_argv(config, {"a": 1})


def test_b3f_sweep_reports_a_bad_file_in_one_line(tmp_path):
    (tmp_path / "s.yaml").write_text("method: bayes\nparameters: {a: {value: 1}}\ncommand: [b3f]\n")
    for argv, needle in ((["sweep", str(tmp_path / "nope.yaml")], "nope.yaml not found"),
                         (["sweep", str(tmp_path / "s.yaml")], "s.yaml: method 'bayes' needs metric")):
        code, out, err = run_b3f(argv, tmp_path)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and needle in lines[0], err
        assert "Traceback" not in out + err


def test_wandb_backend_offline_says_so_in_one_line(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    lines = []
    assert run_wandb(SWEEP, trials=4, log=lines.append) == 2
    assert len(lines) == 1 and "needs a wandb account" in lines[0] and "--backend optuna" in lines[0]
    sweep, agent = wandb_commands(SWEEP, load_sweep_config(SWEEP), 4)
    assert sweep == ["wandb", "sweep", "--project", "benchmark3dface", str(SWEEP)]
    assert agent == ["wandb", "agent", "--count", "4", "SWEEP_ID"]
    assert " ".join(sweep) in lines[0]


def test_every_swept_key_is_accepted_by_lightning_cli(tmp_path):
    """The quick R-Net sweep's trial commands (two sampled trials) parse with b3f's LightningCLI and
    carry the sampled values, on top of the quick profile."""
    sweep = load_sweep_config(SWEEP)
    base = yaml.safe_load((ROOT / "experiments" / "quick" / "deep3d.yaml").read_text())
    for argv in dry_run(SWEEP, trials=2, root=ROOT):
        cfg = print_config(argv, tmp_path)
        for token in argv[3:]:
            key, _, value = token[2:].partition("=")
            node = cfg
            for part in key.split("."):
                node = node[part]
            want = yaml.safe_load(value)
            assert node == want or float(node) == pytest.approx(float(want), rel=1e-12), (key, node, value)
            assert key in sweep["parameters"]
        assert cfg["model"]["class_path"] == base["model"]["class_path"]
        assert cfg["trainer"]["max_time"] == base["trainer"]["max_time"]


TINY = {
    "seed_everything": 0,
    "model": {"class_path": "b3f_methods.deep3d.Deep3D",
              "init_args": {"backbone": "resnet18", "image_size": 32, "lr": 1e-3, "perceptual": "none"}},
    "data": {"class_path": "benchmark3dface.data.datamodules.SyntheticDataModule",
             "init_args": {"mode": "single", "image_size": 32, "train_size": 8, "val_size": 4, "test_size": 0,
                           "batch_size": 2, "num_workers": 0}},
    "trainer": {"accelerator": "cpu", "max_steps": 2, "val_check_interval": 1, "check_val_every_n_epoch": None,
                "limit_val_batches": 1, "num_sanity_val_steps": 0, "enable_progress_bar": False,
                "enable_model_summary": False, "log_every_n_steps": 1},
}


def test_three_trial_sweep_end_to_end(tmp_path, monkeypatch):
    """3 random trials of a tiny R-Net (2 steps, 32 px), each a ``b3f fit`` subprocess with CSV +
    offline wandb logs; the reported best trial is the one with the lowest metric on the
    leaderboard, and that metric is the last validation value in the trial's own CSV log."""
    from benchmark3dface.leaderboard import open_store

    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "method": "random", "metric": {"name": "val/true_error_mm", "goal": "minimize"},
        "parameters": {"model.init_args.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.3}},
        "command": ["${env}", "b3f", "fit", "--config", "tiny.yaml", "${args}"]}))
    db = tmp_path / "board.sqlite"
    lines = []
    summary = run_optuna(tmp_path / "sweep.yaml", trials=3, root=tmp_path, db=str(db), log=lines.append)
    assert [t.state for t in summary.trials] == ["COMPLETE"] * 3, lines
    with open_store(db) as store:
        runs = store.runs(split="val")
    assert len(runs) == 3
    recorded = {r.config["trial"]: r.metrics["val/true_error_mm"].value for r in runs}
    assert {r.config["sweep"] for r in runs} == {"tiny"} and {r.method for r in runs} == {"deep3d"}
    assert {r.dataset for r in runs} == {"synthetic-single@32"}
    assert {getattr(r.metrics["val/true_error_mm"], "direction", "lower") for r in runs} == {"lower"}  # goal: minimize
    assert summary.best.number == min(recorded, key=recorded.get)
    assert summary.best.value == pytest.approx(recorded[summary.best.number])
    for t in summary.trials:
        folder = Path(t.folder)
        assert folder.parent == tmp_path / "runs" / "sweeps" / "tiny"
        (metrics_csv,) = folder.glob("runs/lightning/b3f/version_*/metrics.csv")
        vals = [float(row["val/true_error_mm"]) for row in csv.DictReader(metrics_csv.open())
                if row.get("val/true_error_mm")]
        assert len(vals) == 2 and recorded[t.number] == pytest.approx(vals[-1], rel=1e-6)
        assert list(folder.glob("runs/lightning/wandb/offline-run-*")), "no offline wandb run"
        assert t.params["model.init_args.lr"] == pytest.approx(
            float(next(a for a in (folder / "command.txt").read_text().split() if "lr=" in a).split("=")[1]))
    saved = json.loads((tmp_path / "runs" / "sweeps" / "tiny" / "summary.json").read_text())
    assert saved["best"]["number"] == summary.best.number
    # the study is stored: the same command resumes it, with nothing left to run
    again = run_optuna(tmp_path / "sweep.yaml", trials=3, root=tmp_path, db=str(db), log=lines.append)
    assert again.best.number == summary.best.number and len(again.trials) == 3
    assert any("resuming study 'tiny'" in ln and "0 to run" in ln for ln in lines)


def test_a_failing_trial_is_one_line_and_counted(tmp_path):
    """A trial whose command LightningCLI rejects is marked failed with one line naming its log;
    the sweep finishes and reports no best trial."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "method": "random", "metric": {"name": "val/true_error_mm"},
        "parameters": {"model.init_args.not_an_option": {"values": [1, 2]}},
        "command": ["b3f", "fit", "--config", "tiny.yaml", "${args}"]}))
    lines = []
    summary = run_optuna(tmp_path / "sweep.yaml", trials=1, root=tmp_path, record=False, log=lines.append)
    assert [t.state for t in summary.trials] == ["FAIL"] and summary.best is None
    failed = [ln for ln in lines if "FAILED" in ln]
    assert len(failed) == 1 and "exit 2" in failed[0] and "not_an_option" in failed[0], lines
    assert str(tmp_path / "runs" / "sweeps" / "sweep" / "trial_000" / "log.txt") in failed[0]
    assert "1 fail" in summary.lines()[0] and summary.lines()[-1] == "best: none (no trial completed)"
