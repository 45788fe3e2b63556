"""Shared test helpers: where the read-only test data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("B3F_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"test data {p} is absent (the read-only ../shared/data folder beside the project)")
    return p


@pytest.fixture(scope="session")
def shared_data():
    return shared_path


@pytest.fixture(scope="session")
def benchmark_script():
    """Loader of a script under benchmarks/ as a module (``benchmark_script("facenets")``), so
    tests can check a measuring instrument's own functions; each script is loaded once."""
    import importlib.util

    loaded: dict[str, object] = {}

    def load(name: str):
        if name not in loaded:
            path = ROOT / "benchmarks" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(f"{name}_benchmark_script", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            loaded[name] = mod
        return loaded[name]

    return load


@pytest.fixture
def make_plugin_site(tmp_path):
    """Writer of a third-party plugin "installed" in a folder of its own (put it on PYTHONPATH):
    ``make_plugin_site("ext_pkg", {"__init__.py": source, ...}, {group: {name: "mod:Obj"}})``
    writes the package and a dist-info with its entry points; returns the folder."""

    def make(package: str, files: dict[str, str], entry_points: dict[str, dict[str, str]]) -> Path:
        root = tmp_path / "site"
        pkg = root / package
        pkg.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (pkg / name).write_text(text)
        dist = root / f"{package}-0.1.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text("\n".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
            for group, eps in entry_points.items()))
        return root

    return make


@pytest.fixture(scope="session")
def run_b3f():
    """``run_b3f(args, site, cwd, timeout=900, **env)``: ``python -m benchmark3dface ARGS`` in a
    subprocess with ``site`` on PYTHONPATH and wandb off."""
    import subprocess
    import sys

    def run(args: list[str], site: Path, cwd: Path, timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
        full = dict(os.environ, PYTHONPATH=str(site), WANDB_MODE="disabled", **env)
        return subprocess.run([sys.executable, "-m", "benchmark3dface", *args], capture_output=True, text=True,
                              env=full, cwd=cwd, timeout=timeout)

    return run


# ---------------------------------------------------------------- the tiny analytic face model
#: clean, near-frontal synthetic samples for the method tests
EASY_SYNTH = {"yaw_max": 30.0, "occlusion_prob": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0}


@pytest.fixture(scope="session")
def tiny_fm():
    """The tiny analytic face model (benchmark3dface.data.synthetic.testing)."""
    from benchmark3dface.data.synthetic.testing import tiny_facemodel

    return tiny_facemodel()


@pytest.fixture
def tiny_source(monkeypatch, tiny_fm):
    """Methods built with ``facemodel="tiny"`` get :func:`tiny_fm` (the source name is patched
    into the method base class's model loader); a method test folder makes it autouse."""
    import benchmark3dface.methods.base as base

    real = base.load_facemodel

    def load(source="procedural", path=None, **kw):
        return tiny_fm if source == "tiny" else real(source, path, **kw)

    monkeypatch.setattr(base, "load_facemodel", load)


@pytest.fixture(scope="session")
def tiny_batch(tiny_fm):
    """``tiny_batch(mode, n, size, **options)``: a collated batch of the first ``n`` training
    samples of the tiny model (``EASY_SYNTH`` options unless overridden)."""
    from benchmark3dface.data.collate import collate_samples
    from benchmark3dface.data.synthetic.dataset import SyntheticFaceDataset

    def make(mode: str, n: int, size: int, dataset_size: int | None = None, **options):
        ds = SyntheticFaceDataset({"mode": mode, "image_size": size, **EASY_SYNTH, **options}, split="train",
                                  size=dataset_size or n, facemodel=tiny_fm)
        return collate_samples([ds[i] for i in range(n)])

    return make


@pytest.fixture(scope="session")
def single_batch(tiny_batch):
    """4 single images of the tiny model at 64 px (a folder may override it)."""
    return tiny_batch("single", 4, 64, dataset_size=8)


@pytest.fixture(scope="session")
def set_batch(tiny_batch):
    """2 sets of 3 images of the tiny model at 64 px."""
    return tiny_batch("set", 2, 64, dataset_size=4, set_size=3)
