"""The import-layering contract (pyproject.toml ``[tool.importlinter]``, docs/architecture.md):
it holds on the tree, and ``lint-imports`` with the same config fails, naming the contract, when
a copy of the package gets a deliberate back-import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter not installed (pip install -e .[test])")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
PACKAGE = ROOT / "src" / "benchmark3dface"


def _lint_imports() -> Path:
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.skip(f"lint-imports not found beside {sys.executable}")
    return exe


def _contract_name(contract_id: str) -> str:
    contracts = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]
    return next(c["name"] for c in contracts if c.get("id") == contract_id)


def _run(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([str(_lint_imports()), "--no-cache", "--config", str(CONFIG)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_contract_holds_on_the_tree() -> None:
    res = _run(ROOT)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "BROKEN" not in out and "Contracts: " in out


# (file to add or extend, the line added, the contract it must break)
BACK_IMPORTS = [
    ("metrics/_back_import.py", "from benchmark3dface.methods import Reconstruction\n", "metrics-below-methods"),
    ("metrics/_back_import.py", "import lightning\n", "metrics-below-methods"),
    ("data/_back_import.py", "from benchmark3dface.metrics import PROTOCOLS\n", "data-below-methods"),
    ("leaderboard/_back_import.py", "from benchmark3dface.cli import main\n", "leaderboard-below-methods"),
    ("evaluation/_back_import.py", "import b3f_methods.deep3d\n", "core-no-builtin-methods"),
    ("contracts.py", "import lightning\n", "contracts-no-lightning"),
]


@pytest.mark.parametrize("relpath,line,contract_id", BACK_IMPORTS,
                         ids=[f"{p.split('/')[0]}:{c}" for p, _, c in BACK_IMPORTS])
def test_contract_fails_on_a_back_import(tmp_path: Path, relpath: str, line: str, contract_id: str) -> None:
    copy = tmp_path / "src" / "benchmark3dface"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = copy / relpath
    target.write_text((target.read_text() if target.exists() else "") + line)
    res = _run(tmp_path, pythonpath=tmp_path / "src")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    name = _contract_name(contract_id)
    assert f"{name} BROKEN" in " ".join(out.split()), out
    module = "benchmark3dface." + relpath.removesuffix(".py").replace("/", ".")
    assert module in out, out  # the copy (not the installed tree) was analysed
