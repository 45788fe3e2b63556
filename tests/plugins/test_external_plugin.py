"""A method defined outside the project's packages, registered only through its own entry
point, shows up in ``b3f methods`` and runs through ``b3f benchmark`` with no core edit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = textwrap.dedent('''
    """A third-party method: the mean face placed by a similarity fit of its 68 landmarks."""
    from benchmark3dface.geometry.pose import fit_pose_to_landmarks
    from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod


    class ExternalMeanFace(ReconstructionMethod):
        spec = MethodSpec(name="ext_plugin", input_kind="single", requires=("lm68",), inputs=("image", "lm68"),
                          trainable=False,
                          description="external test plugin")

        def reconstruct(self, batch):
            fm = self.facemodel
            n = batch.lm68.shape[0]
            lm3 = fm.mean_shape[fm.landmarks68].expand(n, 68, 3)
            cam = self.camera_for(batch)
            angles, trans, _ = fit_pose_to_landmarks(lm3, batch.lm68, cam)
            coeffs = fm.layout.zeros(n)
            coeffs[:, fm.layout.slice("angles")] = angles
            coeffs[:, fm.layout.slice("trans")] = trans
            faces = self.faces_from_coeffs(coeffs, cam)
            return [Reconstruction(sid, [f]) for sid, f in zip(batch.sample_id, faces)]
''')


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "ext_b3f_plugin").mkdir(parents=True)
    (root / "ext_b3f_plugin" / "__init__.py").write_text(PLUGIN)
    dist = root / "ext_b3f_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ext-b3f-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[benchmark3dface.methods]\next_plugin = ext_b3f_plugin:ExternalMeanFace\n")
    return root


def _b3f(args: list[str], plugin_path: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(plugin_path), WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "benchmark3dface", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)


def test_external_plugin_listed(plugin_path, tmp_path):
    out = _b3f(["methods", "--json"], plugin_path, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["ext_plugin"]["package"] == "ext-b3f-plugin"
    assert rows["ext_plugin"]["kind"] == "single"
    assert "meanface" in rows  # built-ins come through the same group


def test_external_plugin_runs_through_benchmark(plugin_path, tmp_path):
    db = tmp_path / "lb.sqlite"
    out = _b3f(["benchmark", "--methods", "ext_plugin", "--test-size", "6", "--image-size", "64",
                "--db", str(db), "--out", str(tmp_path / "out"), "--no-wandb", "--landmarks", "gt_noise"],
               plugin_path, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    from benchmark3dface.leaderboard import open_store

    runs = open_store(str(db)).runs(method="ext_plugin")
    assert runs, "no leaderboard run stored for the external plugin"
    assert {r.protocol for r in runs} >= {"true_error"}
    te = next(r for r in runs if r.protocol == "true_error")
    assert te.metrics and all(m.n == 6 for m in te.metrics.values())
