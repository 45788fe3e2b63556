"""Hyper-parameter sweeps from wandb sweep YAML files: offline with Optuna, or with wandb.

One file (e.g. experiments/sweeps/deep3d_quick.yaml) serves both backends of ``b3f sweep``:

* **optuna** (offline, the default): the sweep's ``method`` picks the sampler (``grid`` ->
  ``GridSampler``, ``random`` -> ``RandomSampler``, ``bayes`` -> ``TPESampler``), each wandb
  distribution becomes an Optuna ``suggest_*`` call (:func:`suggest_parameters`),
  ``early_terminate: {type: hyperband, min_iter, ...}`` becomes a ``HyperbandPruner``
  (:func:`make_pruner`), and every trial is a LightningCLI run, the sweep's ``command`` with
  ``${args}`` expanded exactly as ``wandb agent`` does (``--<name>=<value>``), run as
  ``python -m benchmark3dface fit ...`` in its own folder ``<study dir>/trial_NNN`` (CSV +
  offline wandb logs and checkpoints there). A callback in the trial
  (:class:`~.sweep_trial.SweepTrialReporter`) reports the metric after every validation so the
  pruner can stop it; the trial's value is the metric's last validation value. Finished trials
  are recorded on the leaderboard (split ``val``, protocol = the metric name, the sweep and trial
  in the run's config). The study lives in ``<study dir>/study.db`` (Optuna's SQLite storage),
  so running the same command again resumes it: ``--trials N`` is the study's total.
* **wandb** (for users with an account): ``wandb sweep FILE`` then ``wandb agent ID``
  (:func:`run_wandb`).

Parameter names are LightningCLI's dotted keys (``model.init_args.lr``,
``model.init_args.loss_weights.landmark``, ``data.init_args.batch_size``, ``trainer.max_steps``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any


METHODS = ("grid", "random", "bayes")
#: wandb distributions the optuna backend maps (wandb's own names and semantics)
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "q_log_uniform", "q_log_uniform_values", "inv_log_uniform_values",
                 "normal", "q_normal", "log_normal", "q_log_normal")
#: the command macros expanded for a trial (``${env}``, ``${interpreter}`` and ``${program}`` are
#: dropped: the trial runs ``python -m benchmark3dface <sub-command> ...`` itself)
MACROS = ("env", "interpreter", "program", "args", "args_no_equals")
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
#: trial states that count towards ``--trials``
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


class SweepTrialError(RuntimeError):
    """A trial's training did not produce the sweep metric (the message says why)."""


# ============================================================================ config
def _distribution(spec: dict[str, Any]) -> str | None:
    dist = spec.get("distribution")
    if dist is None:
        dist = "constant" if "value" in spec else "categorical" if "values" in spec else None
    return dist


def _check_parameter(name: str, spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise ValueError(  # noqa: TRY004 -- bad file content, reported like every other config error
            f"{where}: parameter {name!r} must be a mapping (value / values / distribution), got {spec!r}")
    if "parameters" in spec:
        raise ValueError(f"{where}: parameter {name!r} is nested; use a dotted name instead "
                         f"(e.g. model.init_args.loss_weights.landmark): LightningCLI takes dotted keys")
    dist = _distribution(spec)
    if dist is None:
        raise ValueError(f"{where}: parameter {name!r} needs 'value', 'values' or 'distribution', got keys {sorted(spec)}")
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"{where}: parameter {name!r}: distribution {dist!r} is not supported here; "
                         f"use one of {DISTRIBUTIONS}")
    if dist == "constant" and "value" not in spec:
        raise ValueError(f"{where}: parameter {name!r}: constant needs 'value'")
    if dist == "categorical" and not (isinstance(spec.get("values"), list) and spec["values"]):
        raise ValueError(f"{where}: parameter {name!r}: categorical needs a non-empty 'values' list")
    if dist.endswith("normal"):
        if float(spec.get("sigma", 1.0)) <= 0:
            raise ValueError(f"{where}: parameter {name!r}: {dist} needs sigma > 0")
    elif dist not in ("constant", "categorical"):
        if "min" not in spec or "max" not in spec or not spec["min"] < spec["max"]:
            raise ValueError(f"{where}: parameter {name!r}: {dist} needs min < max, got {spec.get('min')}, {spec.get('max')}")
        if dist.endswith("_values") and spec["min"] <= 0:
            raise ValueError(f"{where}: parameter {name!r}: {dist} needs min > 0")
    if dist.startswith("q_") and float(spec.get("q", 1.0)) <= 0:
        raise ValueError(f"{where}: parameter {name!r}: {dist} needs q > 0")
    values = spec.get("values", []) + ([spec["value"]] if "value" in spec else [])
    if any(v is None for v in values):
        raise ValueError(f"{where}: parameter {name!r}: None is passed as the string 'None', which LightningCLI "
                         f"rejects; leave the key out of the sweep instead")


def _check_early_terminate(et: Any, where: str) -> None:
    if et is None:
        return
    if not isinstance(et, dict) or et.get("type") != "hyperband":
        raise ValueError(f"{where}: early_terminate must be {{type: hyperband, min_iter: N}} "
                         f"(or max_iter + s), got {et!r}")
    if "min_iter" not in et and not ("max_iter" in et and "s" in et):
        raise ValueError(f"{where}: early_terminate hyperband needs min_iter, or max_iter and s")
    for key in ("min_iter", "max_iter", "s", "eta"):
        if key in et and (not isinstance(et[key], int) or isinstance(et[key], bool) or et[key] < 1):
            raise ValueError(f"{where}: early_terminate {key} must be an integer >= 1, got {et[key]!r}")
    if et.get("eta", 3) < 2:
        raise ValueError(f"{where}: early_terminate eta must be >= 2, got {et['eta']}")


def validate_sweep_config(config: dict[str, Any], where: str = "sweep config") -> dict[str, Any]:
    """Check a sweep config dict (method, metric, parameters, command, early_terminate); returns it.

    Raises:
        ValueError: naming ``where`` and the problem.
    """
    if not isinstance(config, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(config).__name__}")  # noqa: TRY004
    if config.get("method") not in METHODS:
        raise ValueError(f"{where}: 'method' must be one of {METHODS}, got {config.get('method')!r}")
    metric = config.get("metric")
    if config["method"] == "bayes" and not (isinstance(metric, dict) and metric.get("name")):
        raise ValueError(f"{where}: method 'bayes' needs metric: {{name: ..., goal: minimize|maximize}}")
    if metric is not None and (not isinstance(metric, dict) or metric.get("goal", "minimize") not in ("minimize", "maximize")):
        raise ValueError(f"{where}: metric must be {{name: ..., goal: minimize|maximize}}, got {metric!r}")
    params = config.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{where}: 'parameters' must be a non-empty mapping")
    for name, spec in params.items():
        _check_parameter(name, spec, where)
    _check_early_terminate(config.get("early_terminate"), where)
    command = config.get("command")
    if command is not None:
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            raise ValueError(f"{where}: 'command' must be a list of strings")
        if "${args}" not in command and "${args_no_equals}" not in command:
            raise ValueError(f"{where}: 'command' must contain ${{args}} (the --key=value form LightningCLI parses)")
    elif "program" not in config:
        raise ValueError(f"{where}: needs 'command' (or 'program')")
    return config


def load_sweep_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a sweep YAML file."""
    from .configs import read_yaml_file

    p = Path(path)
    data = read_yaml_file(p, "sweep config", hint=" (see experiments/sweeps/)")
    return validate_sweep_config(data, where=str(p))


# ============================================================================ Optuna mapping
def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _choices(values: list[Any]) -> tuple[list[Any], bool]:
    """Optuna's categorical choices of ``values``: the values themselves when they are scalars,
    else their JSON text (decoded again by :func:`suggest_value`)."""
    if all(_scalar(v) for v in values):
        return list(values), False
    return [json.dumps(v, sort_keys=True) for v in values], True


def grid_values(name: str, spec: dict[str, Any]) -> list[Any]:
    """The grid points of a parameter (wandb's grid: ``values``, ``value``, ``int_uniform`` and
    ``q_uniform`` ranges).

    Raises:
        ValueError: a continuous distribution.
    """
    dist = _distribution(spec)
    if dist == "constant":
        return [spec["value"]]
    if dist == "categorical":
        return list(spec["values"])
    if dist == "int_uniform":
        return list(range(int(spec["min"]), int(spec["max"]) + 1))
    if dist == "q_uniform":
        q = float(spec.get("q", 1.0))
        lo, hi = float(spec["min"]), float(spec["max"])
        n = int(math.floor((hi - lo) / q + 1e-9))
        return [round(lo + i * q, 12) for i in range(n + 1)]
    raise ValueError(f"grid search: parameter {name!r} has the continuous distribution {dist!r}; "
                     f"give 'values' (or int_uniform / q_uniform), or use method random or bayes")


def suggest_value(trial: Any, name: str, spec: dict[str, Any], grid: bool = False) -> Any:
    """One parameter's value for an Optuna trial, with wandb's semantics:

    ``categorical`` -> ``suggest_categorical``; ``int_uniform`` -> ``suggest_int``; ``uniform``
    -> ``suggest_float``; ``q_uniform`` -> ``suggest_float(step=q)``; ``log_uniform_values``
    (and ``inv_log_uniform_values``: 1/x of a log-uniform x is log-uniform on the same range)
    -> ``suggest_float(log=True)``; ``log_uniform`` takes natural logs as bounds
    (``exp(min)``..``exp(max)``); ``q_log_uniform(_values)`` rounds the log-uniform draw to a
    multiple of ``q``; ``normal`` / ``log_normal`` (and their ``q_`` forms) draw a quantile
    ``u`` in (0, 1) and map it through the normal's inverse CDF (``mu`` 0, ``sigma`` 1 by
    default, as in wandb); ``constant`` -> the value (not a searched parameter). ``grid``:
    every parameter is a categorical over :func:`grid_values` (what ``GridSampler`` expects).
    """
    dist = _distribution(spec)
    if dist == "constant":
        return spec["value"]
    if grid or dist == "categorical":
        values = grid_values(name, spec) if grid else spec["values"]
        choices, encoded = _choices(values)
        got = trial.suggest_categorical(name, choices)
        return json.loads(got) if encoded else got
    if dist == "int_uniform":
        return trial.suggest_int(name, int(spec["min"]), int(spec["max"]))
    if dist == "uniform":
        return trial.suggest_float(name, float(spec["min"]), float(spec["max"]))
    if dist == "q_uniform":
        return trial.suggest_float(name, float(spec["min"]), float(spec["max"]), step=float(spec.get("q", 1.0)))
    q = float(spec.get("q", 1.0))
    if dist in ("log_uniform", "q_log_uniform"):
        v = trial.suggest_float(name, math.exp(float(spec["min"])), math.exp(float(spec["max"])), log=True)
        return round(v / q) * q if dist.startswith("q_") else v
    if dist in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"):
        v = trial.suggest_float(name, float(spec["min"]), float(spec["max"]), log=True)
        return round(v / q) * q if dist.startswith("q_") else v
    # normal family: a quantile of the normal distribution
    u = trial.suggest_float(name, 1e-6, 1.0 - 1e-6)
    x = NormalDist(float(spec.get("mu", 0.0)), float(spec.get("sigma", 1.0))).inv_cdf(u)
    if "log_normal" in dist:
        x = math.exp(x)
    return round(x / q) * q if dist.startswith("q_") else x


def suggest_parameters(trial: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameter set (name -> value, in the file's order)."""
    grid = config["method"] == "grid"
    return {name: suggest_value(trial, name, spec, grid=grid) for name, spec in config["parameters"].items()}


def grid_size(config: dict[str, Any]) -> int:
    return math.prod(len(grid_values(n, s)) for n, s in config["parameters"].items())


def make_sampler(config: dict[str, Any], seed: int | None = 0) -> Any:
    """``grid`` -> GridSampler over :func:`grid_values`, ``random`` -> RandomSampler, ``bayes`` -> TPESampler."""
    import optuna

    method = config["method"]
    if method == "grid":
        space = {n: _choices(grid_values(n, s))[0] for n, s in config["parameters"].items() if _distribution(s) != "constant"}
        return optuna.samplers.GridSampler(space, seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(early_terminate: dict[str, Any] | None) -> Any:
    """wandb's ``early_terminate: {type: hyperband, ...}`` as Optuna's ``HyperbandPruner``:
    ``min_resource = min_iter`` (or ``max_iter / eta**s``), ``max_resource = max_iter`` (else
    ``"auto"``: the first finished trial's number of reports), ``reduction_factor = eta``
    (default 3, as in wandb). Resources count metric reports (validations). None: no pruning."""
    import optuna

    if not early_terminate:
        return optuna.pruners.NopPruner()
    eta = int(early_terminate.get("eta", 3))
    max_iter = early_terminate.get("max_iter")
    min_iter = early_terminate.get("min_iter") or max(1, int(max_iter / eta ** int(early_terminate["s"])))
    return optuna.pruners.HyperbandPruner(min_resource=int(min_iter), max_resource=int(max_iter) if max_iter else "auto",
                                          reduction_factor=eta)


def metric_of(config: dict[str, Any]) -> tuple[str, str]:
    """(metric name, ``minimize`` | ``maximize``).

    Raises:
        ValueError: the config names no metric (Optuna needs one to compare trials).
    """
    metric = config.get("metric") or {}
    if not metric.get("name"):
        raise ValueError("the optuna backend needs metric: {name: ..., goal: minimize|maximize} in the sweep file")
    return str(metric["name"]), str(metric.get("goal", "minimize"))


# ============================================================================ trial command
def format_args(params: dict[str, Any]) -> list[str]:
    """``${args}`` as ``wandb agent`` expands it: ``--<name>=<value>`` with Python's ``str``."""
    return [f"--{k}={v}" for k, v in params.items()]


def _absolute(token: str, root: Path) -> str:
    """A file argument (``FILE``, ``--key=FILE``) that exists relative to ``root``, made absolute
    (trials run in their own folder)."""
    key, eq, value = token.partition("=") if token.startswith("-") else ("", "", token)
    value = value if key else token
    if value and not value.startswith("-") and not Path(value).is_absolute() and (root / value).is_file():
        value = str(root.absolute() / value)  # not resolve(): a linked config keeps its own folder
    return f"{key}{eq}{value}" if key else value


def trial_argv(config: dict[str, Any], params: dict[str, Any], root: str | Path = ".") -> list[str]:
    """The ``b3f`` arguments of a trial: the sweep's ``command`` from its LightningCLI
    sub-command on, with ``${args}`` (or ``${args_no_equals}``) expanded, ``${envvar:NAME}``
    from the environment and file arguments made absolute against ``root`` (where ``wandb
    agent`` would run). ``command: [..., b3f, fit, --config, FILE, ${args}]`` gives
    ``[fit, --config, /abs/FILE, --name=value, ...]``.

    Raises:
        ValueError: no fit/validate/test/predict in the command, or an unknown macro.
    """
    command = [str(t) for t in (config.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"])]
    program = str(config.get("program", ""))
    tokens: list[str] = []
    for token in command:
        if token == "${program}":
            tokens += program.split()
            continue
        while "${envvar:" in token:
            start = token.index("${envvar:")
            end = token.index("}", start)
            token = token[:start] + os.environ.get(token[start + 9:end], "") + token[end + 1:]
        tokens.append(token)
    start = next((i for i, t in enumerate(tokens) if t in LIGHTNING_COMMANDS), None)
    if start is None:
        raise ValueError(f"the sweep command {' '.join(command)} runs no b3f {'/'.join(LIGHTNING_COMMANDS)}; "
                         f"the optuna backend runs LightningCLI trials (e.g. command: [${{env}}, b3f, fit, "
                         f"--config, FILE, ${{args}}])")
    root = Path(root)
    out: list[str] = []
    for token in tokens[start:]:
        if token == "${args}":
            out += format_args(params)
        elif token == "${args_no_equals}":
            out += [x for k, v in params.items() for x in (f"--{k}", str(v))]
        elif token.startswith("${") and token.endswith("}"):
            raise ValueError(f"sweep command macro {token} is not expanded by the optuna backend (known: {MACROS})")
        else:
            out.append(_absolute(token, root))
    return out


def reporter_arg(out: Path, metric: str, storage: str | None, study_name: str | None, trial_id: int | None,
                 early_terminate: dict[str, Any] | None) -> str:
    """The ``--trainer.callbacks+=...`` argument adding :class:`~.sweep_trial.SweepTrialReporter`."""
    spec = {"class_path": "benchmark3dface.training.sweep_trial.SweepTrialReporter",
            "init_args": {"out": str(out), "metric": metric, "storage": storage, "study_name": study_name,
                          "trial_id": trial_id, "early_terminate": early_terminate}}
    return "--trainer.callbacks+=" + json.dumps(spec)


# ============================================================================ the optuna backend
@dataclass
class TrialRecord:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    folder: str
    message: str = ""


@dataclass
class SweepSummary:
    name: str
    study_dir: Path
    storage: str
    metric: str
    goal: str
    trials: list[TrialRecord] = field(default_factory=list)
    best: TrialRecord | None = None
    varied: list[str] | None = None  #: the searched (non-constant) parameters, shown in the per-trial lines
    extra: list[str] = field(default_factory=list)  #: arguments added to every trial (--max-steps, --set)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"name": self.name, "study_dir": str(self.study_dir), "storage": self.storage, "metric": self.metric,
                "goal": self.goal, "extra": self.extra, "best": asdict(self.best) if self.best else None,
                "trials": [asdict(t) for t in self.trials]}

    def lines(self) -> list[str]:
        """The printed summary: one line per trial, then the best trial."""
        states = [t.state.lower() for t in self.trials]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        out = [f"study {self.name}: {len(self.trials)} trials ({counts or 'none'}; {self.storage})"]
        for t in self.trials:
            value = f"{self.metric}={t.value:.6g}" if t.value is not None else t.message or "-"
            out.append(f"  trial {t.number:3d} {t.state.lower():8s} {value}  {_short(t.params, self.varied)}")
        if self.best is None:
            out.append("best: none (no trial completed)")
        else:
            out.append(f"best: trial {self.best.number}, {self.metric} = {self.best.value:.6g} ({self.goal}), "
                       f"params {json.dumps(self.best.params)}")
            if self.extra:
                out.append(f"      (every trial also had {' '.join(self.extra)})")
        return out


def _short(params: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """``lr=0.0006466 backbone=resnet18 ...``: the last part of each name (only ``keys``, when given)."""
    return " ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                    for k, v in params.items() if keys is None or k in keys)


_ERROR_LINE = re.compile(r"^(error:|\w*(Error|Exception)\b)")


def _last_line(log: Path, limit: int = 400) -> str:
    """The error a trial's log ends with, as one line: from its last ``error: ...`` (argparse /
    LightningCLI) or ``SomeError: ...`` (a traceback) line to the end, else its last line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    starts = [i for i, ln in enumerate(lines) if _ERROR_LINE.match(ln)]
    text = " ".join(lines[starts[-1]:]) if starts else (lines[-1] if lines else "no output")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _storage(study_dir: Path) -> Any:
    import warnings

    import optuna

    url = f"sqlite:///{(study_dir / 'study.db').resolve()}"
    with warnings.catch_warnings():  # heartbeats (stale RUNNING trials of a killed sweep become FAIL) are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180,
                                             engine_kwargs={"connect_args": {"timeout": 60}})
    return storage, url


def _record(store: Any, summary: SweepSummary, trial: TrialRecord, info: dict[str, Any], argv: list[str]) -> None:
    from ..leaderboard import records
    from ..leaderboard.records import RunInfo

    run = RunInfo(method=str(info.get("method") or "unknown"), dataset=str(info.get("dataset") or "unknown"),
                  protocol=summary.metric, split="val", seed=int(info.get("seed") or 0),
                  checkpoint=None,
                  config={"sweep": summary.name, "study_dir": str(summary.study_dir), "trial": trial.number,
                          "params": json.loads(json.dumps(trial.params, default=str)), "command": argv,
                          "global_step": info.get("global_step")})
    metric: dict[str, Any] = {"value": trial.value}
    if "direction" in getattr(records, "METRIC_KEYS", ()):  # the sweep's goal is the metric's declared direction
        metric["direction"] = "lower" if summary.goal == "minimize" else "higher"
    store.record_run(run, {"metrics": {summary.metric: metric}}, on_duplicate="replace")


def run_optuna(path: str | Path, trials: int | None = None, study_dir: str | Path | None = None,
               root: str | Path = ".", max_steps: int | None = None, overrides: Sequence[str] = (),
               db: str | None = None, record: bool = True, seed: int = 0,
               log: Callable[[str], None] = print) -> SweepSummary:
    """Run (or resume) the sweep ``path`` offline with Optuna; see the module docstring.

    Args:
        trials: the study's total number of finished trials (complete, pruned or failed) to
            reach; default the file's ``run_cap``, else the grid size (grid), else 10.
        study_dir: default ``runs/sweeps/<name>`` under ``root`` (``name``: the file's ``name``
            or its stem); holds ``study.db``, ``summary.json`` and one folder per trial.
        root: where relative paths of the sweep's command resolve (the repository root).
        max_steps: ``--trainer.max_steps`` of every trial (after the swept values).
        overrides: more ``KEY=VALUE`` LightningCLI arguments for every trial.
        db: leaderboard URL or path (default ``$B3F_DB`` or ``runs/leaderboard.sqlite``);
            ``record=False`` skips the leaderboard.

    Raises:
        FileNotFoundError / ValueError: a bad sweep file (naming it) or a study folder that
            holds another sweep.
    """
    import optuna

    path = Path(path)
    config = load_sweep_config(path)
    metric, goal = metric_of(config)
    trial_argv(config, {}, root)  # the command is usable (before any study is created)
    if config["method"] == "grid":
        for n, s in config["parameters"].items():
            grid_values(n, s)
    name = str(config.get("name") or path.stem)
    root = Path(root).resolve()
    study_dir = Path(study_dir) if study_dir else root / "runs" / "sweeps" / name
    study_dir = study_dir.resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage, url = _storage(study_dir)
    study = optuna.create_study(storage=storage, study_name=name, direction=goal, load_if_exists=True,
                                sampler=make_sampler(config, seed), pruner=make_pruner(config.get("early_terminate")))
    stored = study.user_attrs.get("sweep")
    if stored is None:
        study.set_user_attr("sweep", json.loads(json.dumps(config, default=str)))
    elif stored != json.loads(json.dumps(config, default=str)):
        raise ValueError(f"{study_dir} holds study {name!r} of a different sweep config than {path}; "
                         f"give another --study-dir (or delete that folder)")
    total = trials if trials is not None else config.get("run_cap") or (grid_size(config) if config["method"] == "grid" else 10)
    if config["method"] == "grid":
        total = min(int(total), grid_size(config))
    summary = SweepSummary(name, study_dir, url, metric, goal,
                           varied=[n for n, sp in config["parameters"].items() if _distribution(sp) != "constant"],
                           extra=_extra_args(max_steps, overrides))
    store = None
    if record:
        from ..leaderboard.store import open_store

        store = open_store(db)

    def objective(trial: Any) -> float:
        try:
            return run_trial(trial)
        except SweepTrialError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise

    def run_trial(trial: Any) -> float:
        params = suggest_parameters(trial, config)
        trial.set_user_attr("params", json.loads(json.dumps(params, default=str)))
        folder = study_dir / f"trial_{trial.number:03d}"
        if folder.exists():
            shutil.rmtree(folder)  # left by a deleted study (trial numbers are unique within one)
        folder.mkdir(parents=True)
        trial.set_user_attr("folder", str(folder))
        out = folder / "trial.json"
        argv = trial_argv(config, params, root) + summary.extra
        argv.append(reporter_arg(out, metric, url, name, trial._trial_id, config.get("early_terminate")))
        (folder / "command.txt").write_text("b3f " + " ".join(argv[:-1]) + "\n")
        env = dict(os.environ, WANDB_SILENT="true", PYTHONUNBUFFERED="1")
        t0 = time.perf_counter()
        log(f"trial {trial.number}: {_short(params, summary.varied)}")
        with (folder / "log.txt").open("w") as fh:
            code = subprocess.run([sys.executable, "-m", "benchmark3dface", *argv], cwd=folder, env=env,
                                  stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
        seconds = time.perf_counter() - t0
        info = json.loads(out.read_text()) if out.is_file() else {}
        if code != 0:
            raise SweepTrialError(f"trial {trial.number} failed (exit {code}): {_last_line(folder / 'log.txt')} "
                                  f"(log: {folder / 'log.txt'})")
        values = [v for _, v in info.get("values", [])]
        if not values:
            raise SweepTrialError(f"trial {trial.number}: the metric {metric!r} was never logged at a validation "
                                  f"(logged: {', '.join(info.get('logged', [])) or 'nothing'}; no validation ran? with --max-steps "
                                  f"add --set trainer.val_check_interval=N below it)")
        if info.get("pruned"):
            log(f"trial {trial.number}: pruned after {len(values)} validations ({metric}={values[-1]:.6g}, {seconds:.0f} s)")
            raise optuna.TrialPruned()
        value = float(values[-1])
        if not math.isfinite(value):
            raise SweepTrialError(f"trial {trial.number}: {metric} is {value}")
        log(f"trial {trial.number}: {metric}={value:.6g} ({seconds:.0f} s)")
        if store is not None:
            _record(store, summary, TrialRecord(trial.number, "COMPLETE", value, params, str(folder)), info, argv[:-1])
        return value

    def on_failure(_study: Any, frozen: Any) -> None:
        if frozen.state.name == "FAIL":
            log(f"trial {frozen.number}: FAILED -- {frozen.user_attrs.get('fail_reason', 'interrupted')}")

    done = sum(t.state.name in FINISHED for t in study.trials)
    remaining = max(0, int(total) - done)
    if done:
        log(f"resuming study {name!r} in {study_dir}: {done} trials finished, {remaining} to run")
    try:
        if remaining:
            study.optimize(objective, n_trials=remaining, catch=(SweepTrialError,), callbacks=[on_failure])
    finally:
        if store is not None:
            store.close()
    summary.trials = [_trial_record(t) for t in study.trials]
    complete = [t for t in summary.trials if t.state == "COMPLETE" and t.value is not None]
    if complete:
        best = study.best_trial
        summary.best = next(t for t in summary.trials if t.number == best.number)
    (study_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return summary


def _trial_record(t: Any) -> TrialRecord:
    return TrialRecord(t.number, t.state.name, t.value, dict(t.user_attrs.get("params", t.params)),
                       str(t.user_attrs.get("folder", "")), str(t.user_attrs.get("fail_reason", "")))


def dry_run(path: str | Path, trials: int = 1, root: str | Path = ".", seed: int = 0,
            max_steps: int | None = None, overrides: Sequence[str] = ()) -> list[list[str]]:
    """The ``b3f`` arguments of the first ``trials`` trials the sampler would run (an in-memory
    study, nothing trained or stored)."""
    import optuna

    config = load_sweep_config(path)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=make_sampler(config, seed))
    extra = _extra_args(max_steps, overrides)
    return [trial_argv(config, suggest_parameters(study.ask(), config), root) + extra for _ in range(trials)]


def _extra_args(max_steps: int | None, overrides: Sequence[str]) -> list[str]:
    """``--trainer.max_steps=N`` and the ``--set KEY=VALUE`` arguments (after the swept ones, so they win)."""
    extra = [f"--trainer.max_steps={max_steps}"] if max_steps is not None else []
    return extra + [o if o.startswith("--") else f"--{o}" for o in overrides]


# ============================================================================ the wandb backend
def wandb_commands(path: str | Path, config: dict[str, Any], trials: int | None = None) -> tuple[list[str], list[str]]:
    """(``wandb sweep`` command, ``wandb agent`` command with ``SWEEP_ID`` as a placeholder)."""
    sweep = ["wandb", "sweep"] + (["--project", str(config["project"])] if config.get("project") else []) + [str(path)]
    agent = ["wandb", "agent"] + (["--count", str(trials)] if trials else []) + ["SWEEP_ID"]
    return sweep, agent


def run_wandb(path: str | Path, trials: int | None = None, log: Callable[[str], None] = print) -> int:
    """``wandb sweep FILE`` then ``wandb agent ENTITY/PROJECT/ID`` (the agent runs the trials
    from the current folder). Needs a wandb account: offline it says so in one line and
    returns 2."""
    from .loggers import wandb_mode

    config = load_sweep_config(path)
    sweep, agent = wandb_commands(path, config, trials)
    if wandb_mode() != "online":
        log(f"b3f sweep: --backend wandb needs a wandb account (`wandb login` or WANDB_API_KEY; WANDB_MODE="
            f"{os.environ.get('WANDB_MODE', 'unset')}); offline use --backend optuna. The commands: "
            f"{' '.join(sweep)} ; {' '.join(agent)}")
        return 2
    log("$ " + " ".join(sweep))
    wandb_cli = [sys.executable, "-m", "wandb"]
    proc = subprocess.run(wandb_cli + sweep[1:], capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    found = re.search(r"wandb agent (\S+)", text)
    if proc.returncode != 0 or not found:
        log(f"b3f sweep: `{' '.join(sweep)}` failed (exit {proc.returncode}): {_tail(text)}")
        return 1
    agent[-1] = found.group(1)
    log("$ " + " ".join(agent))
    return subprocess.run(wandb_cli + agent[1:], check=False).returncode


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


__all__ = ["DISTRIBUTIONS", "METHODS", "SweepSummary", "SweepTrialError", "TrialRecord", "dry_run", "format_args",
           "grid_size", "grid_values", "load_sweep_config", "make_pruner", "make_sampler", "metric_of",
           "reporter_arg", "run_optuna", "run_wandb", "suggest_parameters", "suggest_value", "trial_argv",
           "validate_sweep_config", "wandb_commands"]
