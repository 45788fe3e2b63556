"""A method defined outside the project's packages, registered only through its own entry
point, shows up in ``b3f methods`` and runs through ``b3f benchmark`` with no core edit."""

from __future__ import annotations

import json
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
def plugin_path(make_plugin_site) -> Path:
    return make_plugin_site("ext_b3f_plugin", {"__init__.py": PLUGIN},
                            {"benchmark3dface.methods": {"ext_plugin": "ext_b3f_plugin:ExternalMeanFace"}})


@pytest.fixture
def _b3f(run_b3f):
    return run_b3f


def test_external_plugin_listed(plugin_path, tmp_path, _b3f):
    out = _b3f(["methods", "--json"], plugin_path, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["ext_plugin"]["package"] == "ext-b3f-plugin"
    assert rows["ext_plugin"]["kind"] == "single"
    assert "meanface" in rows  # built-ins come through the same group


def test_external_plugin_runs_through_benchmark(plugin_path, tmp_path, _b3f):
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
