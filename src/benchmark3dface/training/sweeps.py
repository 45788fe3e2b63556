"""wandb sweep configs for ``b3f fit``, checked offline.

A sweep (``wandb sweep FILE`` then ``wandb agent ENTITY/PROJECT/ID``) runs its ``command`` once
per parameter set; the agent expands ``${args}`` to ``--<name>=<value>`` for every parameter, so
parameter names are LightningCLI's dotted keys (``model.init_args.lr``,
``model.init_args.loss_weights.landmark``, ``data.init_args.batch_size``, ``trainer.max_steps``).
The functions here do what the agent does without contacting wandb: sample one parameter set,
expand the command line the way ``wandb agent`` does (wandb's own argument formatting), and run
it through b3f's LightningCLI parser (``--print_config``) to prove that every key is accepted.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

METHODS = ("grid", "random", "bayes")
#: distributions this module can sample (a subset of wandb's)
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "q_log_uniform_values", "normal")
#: the ``${...}`` command macros the agent expands
MACROS = ("env", "interpreter", "program", "args", "args_no_hyphens", "args_no_boolean_flags", "args_json",
          "args_json_file", "args_no_equals", "args_append_hydra", "args_override_hydra")
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


# ============================================================================ config
def _check_parameter(name: str, spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise ValueError(  # noqa: TRY004 -- bad file content, reported like every other config error
            f"{where}: parameter {name!r} must be a mapping (value / values / distribution), got {spec!r}")
    if "parameters" in spec:
        raise ValueError(f"{where}: parameter {name!r} is nested; use a dotted name instead "
                         f"(e.g. model.init_args.loss_weights.landmark): LightningCLI takes dotted keys")
    dist = spec.get("distribution")
    if dist is None:
        dist = "constant" if "value" in spec else "categorical" if "values" in spec else None
    if dist is None:
        raise ValueError(f"{where}: parameter {name!r} needs 'value', 'values' or 'distribution', got keys {sorted(spec)}")
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"{where}: parameter {name!r}: distribution {dist!r} is not supported here; "
                         f"use one of {DISTRIBUTIONS}")
    if dist == "constant" and "value" not in spec:
        raise ValueError(f"{where}: parameter {name!r}: constant needs 'value'")
    if dist == "categorical" and not (isinstance(spec.get("values"), list) and spec["values"]):
        raise ValueError(f"{where}: parameter {name!r}: categorical needs a non-empty 'values' list")
    if dist == "normal":
        if "mu" not in spec or "sigma" not in spec:
            raise ValueError(f"{where}: parameter {name!r}: normal needs 'mu' and 'sigma'")
    elif dist not in ("constant", "categorical"):
        if "min" not in spec or "max" not in spec or not spec["min"] < spec["max"]:
            raise ValueError(f"{where}: parameter {name!r}: {dist} needs min < max, got {spec.get('min')}, {spec.get('max')}")
        if "log_uniform_values" in dist and spec["min"] <= 0:
            raise ValueError(f"{where}: parameter {name!r}: {dist} needs min > 0")
    values = spec.get("values", []) + ([spec["value"]] if "value" in spec else [])
    if any(v is None for v in values):
        raise ValueError(f"{where}: parameter {name!r}: None is passed as the string 'None', which LightningCLI "
                         f"rejects; leave the key out of the sweep instead")


def validate_sweep_config(config: dict[str, Any], where: str = "sweep config") -> dict[str, Any]:
    """Check a sweep config dict (method, metric, parameters, command); returns it.

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
    if metric is not None and metric.get("goal", "minimize") not in ("minimize", "maximize"):
        raise ValueError(f"{where}: metric goal must be minimize or maximize, got {metric.get('goal')!r}")
    params = config.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{where}: 'parameters' must be a non-empty mapping")
    for name, spec in params.items():
        _check_parameter(name, spec, where)
    command = config.get("command")
    if command is not None:
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            raise ValueError(f"{where}: 'command' must be a list of strings")
        if "${args}" not in command:
            raise ValueError(f"{where}: 'command' must contain ${{args}} (the --key=value form LightningCLI parses)")
    elif "program" not in config:
        raise ValueError(f"{where}: needs 'command' (or 'program')")
    return config


def load_sweep_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a sweep YAML file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"sweep config {p} not found (see experiments/sweeps/)")
    with p.open() as f:
        return validate_sweep_config(yaml.safe_load(f), where=str(p))


# ============================================================================ sampling
def sample_value(spec: dict[str, Any], rng: random.Random) -> Any:
    """One draw from a parameter spec (wandb semantics: ``log_uniform_values`` takes min/max
    as values, ``log_uniform`` as natural logs; ``q_*`` round to multiples of ``q``)."""
    dist = spec.get("distribution") or ("constant" if "value" in spec else "categorical")
    if dist == "constant":
        return spec["value"]
    if dist == "categorical":
        probs = spec.get("probabilities")
        return rng.choices(spec["values"], weights=probs)[0] if probs else rng.choice(spec["values"])
    if dist == "normal":
        return rng.gauss(float(spec["mu"]), float(spec["sigma"]))
    lo, hi = spec["min"], spec["max"]
    if dist == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if dist == "uniform":
        return rng.uniform(float(lo), float(hi))
    if dist == "q_uniform":
        q = float(spec.get("q", 1.0))
        return round(rng.uniform(float(lo), float(hi)) / q) * q
    if dist == "log_uniform":
        return math.exp(rng.uniform(float(lo), float(hi)))
    v = math.exp(rng.uniform(math.log(float(lo)), math.log(float(hi))))
    if dist == "q_log_uniform_values":
        q = float(spec.get("q", 1.0))
        return round(v / q) * q
    return v


def sample_parameters(config: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """One parameter set of the sweep (what a random-search agent could be handed)."""
    rng = random.Random(seed)
    return {name: sample_value(spec, rng) for name, spec in config["parameters"].items()}


# ============================================================================ command line
def _format_args(params: dict[str, Any]) -> dict[str, list[str]]:
    """The agent's macro expansions of a parameter set (wandb's own formatting when available)."""
    try:
        from wandb.sdk.launch.sweeps.utils import create_sweep_command_args
    except ImportError:  # same rule as the agent: --name=value with Python's str()
        return {"args": [f"--{k}={v}" for k, v in params.items()],
                "args_no_hyphens": [f"{k}={v}" for k, v in params.items()]}
    return create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})


def agent_command(config: dict[str, Any], params: dict[str, Any], interpreter: str = "python") -> list[str]:
    """The command line ``wandb agent`` runs for ``params``: ``${env}`` -> /usr/bin/env,
    ``${interpreter}``, ``${program}`` and ``${args...}`` expanded, ``${envvar:NAME}`` from
    the environment. The default command is ``${env} ${interpreter} ${program} ${args}``."""
    command = list(config.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"])
    macros: dict[str, list[str]] = dict(_format_args(params))
    macros.update({"env": ["/usr/bin/env"], "interpreter": [interpreter],
                   "program": [str(config.get("program", ""))]})
    out: list[str] = []
    for token in command:
        token = str(token)
        while "${envvar:" in token:
            start = token.index("${envvar:")
            end = token.index("}", start)
            name = token[start + len("${envvar:"):end]
            token = token[:start] + os.environ.get(name, name) + token[end + 1:]
        if token.startswith("${") and token.endswith("}"):
            key = token[2:-1]
            if key not in macros:
                raise ValueError(f"sweep command macro {token} is not expanded offline (known: {sorted(macros)})")
            out += [str(v) for v in macros[key]]
        else:
            out.append(token)
    return out


def lightning_argv(command: list[str]) -> list[str]:
    """The ``b3f`` arguments of an agent command: from the sub-command (fit/validate/...) on."""
    for i, token in enumerate(command):
        if token in LIGHTNING_COMMANDS:
            return command[i:]
    raise ValueError(f"no LightningCLI sub-command ({'/'.join(LIGHTNING_COMMANDS)}) in {command}")


def _absolute_files(argv: list[str], root: Path) -> list[str]:
    out = []
    for token in argv:
        key, eq, value = token.partition("=") if token.startswith("-") else ("", "=", token)
        if eq and value and not Path(value).is_absolute() and (root / value).is_file():
            value = str((root / value).resolve())
        out.append(f"{key}{eq}{value}" if key else value if eq else token)
    return out


def _print_config_in_process(args: list[str], cwd: Path) -> tuple[int, str, str]:
    import contextlib
    import io

    from ..cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, saved_mode = list(sys.argv), os.getcwd(), os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "disabled"
    code: Any = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*args, "--print_config"])
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv[:] = saved_argv
        os.chdir(saved_cwd)
        if saved_mode is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = saved_mode
    return (0 if code in (0, None) else int(code) if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def check_lightning_argv(argv: list[str], root: str | Path = ".", cwd: str | Path | None = None,
                         in_process: bool = False, timeout: float = 300.0) -> dict[str, Any]:
    """Parse ``b3f <argv>`` with b3f's LightningCLI (``--print_config``: nothing is
    instantiated, wandb disabled); returns the resolved config.

    Args:
        argv: ``fit --config FILE --key=value ...``.
        root: folder that relative file arguments refer to (where ``wandb agent`` runs).
        cwd: folder to run in (the CLI creates ``runs/`` there); default ``root``.
        in_process: parse in this process (fast; temporarily changes cwd and ``sys.argv``)
            instead of a ``python -m benchmark3dface`` subprocess (what the agent runs).

    Raises:
        ValueError: the parser rejected the arguments (its message included).
    """
    root = Path(root).resolve()
    run_dir = Path(cwd or root)
    args = _absolute_files(list(argv), root)
    if in_process:
        code, stdout, stderr = _print_config_in_process(args, run_dir)
    else:
        env = dict(os.environ, WANDB_MODE="disabled", WANDB_SILENT="true")
        proc = subprocess.run([sys.executable, "-m", "benchmark3dface", *args, "--print_config"], cwd=str(run_dir),
                              env=env, capture_output=True, text=True, timeout=timeout, check=False)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    if code != 0:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        raise ValueError(f"b3f {' '.join(argv)} was rejected by LightningCLI (exit {code}):\n{tail}")
    cfg = yaml.safe_load(stdout)
    if not isinstance(cfg, dict):
        raise RuntimeError(f"b3f --print_config printed no config:\n{stdout[-2000:]}")  # noqa: TRY004
    return cfg


def lookup(config: dict[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]["c"]`` for ``"a.b.c"`` (KeyError naming the missing part)."""
    node: Any = config
    for i, part in enumerate(dotted.split(".")):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{'.'.join(dotted.split('.')[:i + 1])} not in the parsed config")
        node = node[part]
    return node


__all__ = ["DISTRIBUTIONS", "agent_command", "check_lightning_argv", "lightning_argv", "load_sweep_config", "lookup",
           "sample_parameters", "sample_value", "validate_sweep_config"]
