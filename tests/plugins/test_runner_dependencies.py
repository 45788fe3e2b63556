"""``b3f benchmark`` with trainable external plugins: a method that takes another method's
trained checkpoint (``MethodSpec.checkpoint_args``) gets it trained first, re-runs skip
finished runs, and ``--config METHOD=FILE:NAME`` lands a config variant under its own name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = textwrap.dedent('''
    """Two third-party methods: a trainable one (learns a 2-d shift) and one that needs its checkpoint."""
    import torch

    from benchmark3dface.geometry.pose import fit_pose_to_landmarks
    from benchmark3dface.methods import MethodSpec, Reconstruction, ReconstructionMethod


    class ExtBase(ReconstructionMethod):
        spec = MethodSpec(name="ext_base", input_kind="single", requires=("lm68",), inputs=("image", "lm68"),
                          configs={"quick": "quick.yaml"}, description="trainable test plugin")

        def __init__(self, target: float = 0.5, **kw):
            super().__init__(**kw)
            self.save_hyperparameters()
            self.shift = torch.nn.Parameter(torch.zeros(2))

        def training_step(self, batch, batch_idx):
            loss = ((self.shift - self.hparams.target) ** 2).sum() + 0.0 * batch.image.mean()
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.2)

        def reconstruct(self, batch):
            fm = self.facemodel
            n = batch.lm68.shape[0]
            cam = self.camera_for(batch)
            angles, trans, _ = fit_pose_to_landmarks(fm.mean_shape[fm.landmarks68].expand(n, 68, 3), batch.lm68, cam)
            coeffs = fm.layout.zeros(n)
            coeffs[:, fm.layout.slice("angles")] = angles
            coeffs[:, fm.layout.slice("trans")] = trans
            faces = self.faces_from_coeffs(coeffs, cam)
            return [Reconstruction(sid, [f], extras={"shift": self.shift.detach().clone()})
                    for sid, f in zip(batch.sample_id, faces)]


    class ExtDependent(ExtBase):
        spec = MethodSpec(name="ext_dependent", input_kind="single", requires=("lm68",), inputs=("image", "lm68"),
                          trainable=False,
                          checkpoint_args={"base_checkpoint": "ext_base"}, description="needs ext_base")

        def __init__(self, base_checkpoint: str, **kw):
            super().__init__(**kw)
            state = torch.load(base_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
            self.shift.data.copy_(state["shift"])
            self.config_warnings = ["a configuration warning, stored in the run config"]
            with open(base_checkpoint + ".used", "a") as f:
                f.write(" ".join(f"{x:.6f}" for x in self.shift.tolist()) + "\\n")
''')

CONFIG = textwrap.dedent('''
    seed_everything: 0
    model:
      class_path: ext_b3f_trainable.ExtBase
      init_args: {target: 0.5}
    data:
      class_path: benchmark3dface.data.datamodules.SyntheticDataModule
      init_args: {mode: single, image_size: 32, train_size: 8, val_size: 0, test_size: 0, batch_size: 4,
                  num_workers: 0}
    trainer: {accelerator: cpu, max_steps: 6, num_sanity_val_steps: 0, limit_val_batches: 0}
''')


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    pkg = root / "ext_b3f_trainable"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN)
    (pkg / "quick.yaml").write_text(CONFIG)
    (pkg / "variant.yaml").write_text(CONFIG.replace("{target: 0.5}", "{target: -0.25}"))
    dist = root / "ext_b3f_trainable-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ext-b3f-trainable\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[benchmark3dface.methods]\next_base = ext_b3f_trainable:ExtBase\n"
                                           "ext_dependent = ext_b3f_trainable:ExtDependent\n")
    return root


def _bench(site: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), WANDB_MODE="disabled")
    args = ["benchmark", "--test-size", "4", "--image-size", "48", "--db", str(tmp_path / "lb.sqlite"),
            "--out", str(tmp_path / "out"), "--no-wandb", "--no-report", "--landmarks", "gt_noise", *extra]
    out = subprocess.run([sys.executable, "-m", "benchmark3dface", *args], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_checkpoint_dependency_skip_and_variant(site: Path, tmp_path: Path) -> None:
    from benchmark3dface.leaderboard import open_store

    _bench(site, tmp_path, "--methods", "ext_dependent")
    trained = list((tmp_path / "out" / "ext_base").glob("*/trained.json"))
    assert len(trained) == 1, "the dependency was not trained exactly once"
    ckpt = Path(json.loads(trained[0].read_text())["checkpoint"])
    shift = [float(x) for x in (ckpt.parent / (ckpt.name + ".used")).read_text().split()]
    assert all(0.3 < x < 0.7 for x in shift), f"dependent got an untrained checkpoint: {shift}"
    store = open_store(str(tmp_path / "lb.sqlite"))
    assert {r.method for r in store.runs()} == {"ext_dependent"}
    assert all(r.config["warnings"] for r in store.runs())

    # re-run: the dependent's runs are finished -> skipped, nothing retrained
    out = _bench(site, tmp_path, "--methods", "ext_dependent,ext_base")
    assert "skipped" in out.stdout and "ext_dependent" in out.stdout
    assert len(list((tmp_path / "out" / "ext_base").glob("*/trained.json"))) == 1  # ext_base reused
    assert {r.method for r in store.runs()} == {"ext_dependent", "ext_base"}

    # a config variant lands under its own name, with its own training
    variant = site / "ext_b3f_trainable" / "variant.yaml"
    _bench(site, tmp_path, "--methods", "ext_base", "--config", f"ext_base={variant}:ext_base-neg")
    runs = [r for r in store.runs() if r.method == "ext_base-neg"]
    assert runs and all(r.config["plugin"] == "ext_base" for r in runs)
    assert len(list((tmp_path / "out" / "ext_base-neg").glob("*/trained.json"))) == 1
