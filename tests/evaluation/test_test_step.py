"""``b3f test`` / ``Trainer.test`` on a method scores through the same path as ``b3f evaluate``."""

from __future__ import annotations

import lightning as L
import torch

from benchmark3dface.data.datamodules import SyntheticDataModule
from benchmark3dface.evaluation.loop import EvaluationPlan, default_plan
from benchmark3dface.methods.registry import installed_methods


def _dm():
    dm = SyntheticDataModule(mode="single", image_size=64, train_size=0, val_size=0, test_size=3, seed=3,
                             batch_size=3, num_workers=0, drop_last=False)
    dm.setup("test")
    return dm


def test_default_plan_and_attached_plan_give_the_same_numbers():
    cls = installed_methods()["oracle"].load()
    dm = _dm()
    plan = default_plan(cls.spec, dm)
    assert set(plan.protocols) == {"true_error", "aflw2000_nme", "micc", "now"}
    assert plan.landmark_source is None and plan.inputs == tuple(cls.spec.inputs)
    m = cls()
    m.attach_evaluation(EvaluationPlan(protocols={"true_error": {}}, inputs=plan.inputs, owner="oracle"))
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(
        m, datamodule=dm, verbose=False)
    te = m.test_results["true_error"]
    assert te.n == 3 and te.metrics["mean"].value < 1e-3  # the oracle's floor


def test_b3f_test_without_a_plan_scores_meanface():
    cls = installed_methods()["meanface"].load()
    m = cls()
    dm = _dm()
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(
        m, datamodule=dm, verbose=False)
    te = m.test_results["true_error"]
    assert te.n + te.n_failed == 3
    assert torch.isfinite(torch.tensor(te.metrics["mean"].value)) or te.n == 0
