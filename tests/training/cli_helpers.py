"""Run ``b3f`` in this process and capture what it prints (LightningCLI ``--print_config``
parses a config without instantiating anything: seconds, not a training run)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any

import yaml


def run_b3f(argv: list[str], cwd: str | Path) -> tuple[int, str, str]:
    """``b3f <argv>`` in-process, in ``cwd``, wandb disabled: (exit code, stdout, stderr)."""
    from benchmark3dface.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, saved_mode = list(sys.argv), os.getcwd(), os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "disabled"
    code: Any = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv[:] = saved_argv
        os.chdir(saved_cwd)
        if saved_mode is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = saved_mode
    code = 0 if code in (0, None) else int(code) if isinstance(code, int) else 1
    return code, out.getvalue(), err.getvalue()


def print_config(argv: list[str], cwd: str | Path) -> dict[str, Any]:
    """The config LightningCLI resolves for ``b3f <argv>`` (``--print_config``)."""
    code, stdout, stderr = run_b3f([*argv, "--print_config"], cwd)
    if code != 0:
        raise ValueError(f"b3f {' '.join(argv)} was rejected (exit {code}):\n{(stderr or stdout)[-3000:]}")
    cfg = yaml.safe_load(stdout)
    assert isinstance(cfg, dict), stdout[-2000:]
    return cfg


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.0.c": leaf}`` of nested dicts and lists (list items by index)."""
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(node, list) and node:
        return {k: v for i, value in enumerate(node) for k, v in flatten(value, f"{prefix}{i}.").items()}
    return {prefix[:-1]: node}
