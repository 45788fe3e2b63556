"""The evaluation path records each unit's ground-truth |yaw| (sample, view) with every protocol
result, failures included, and the store keeps it: compared with the test samples' own
``Sample.yaw`` read independently here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmark3dface.contracts import FaceReconstruction, Reconstruction
from benchmark3dface.data.datamodules import SyntheticDataModule
from benchmark3dface.evaluation.loop import EvaluationPlan, run_evaluation
from benchmark3dface.leaderboard import ResultsStore, RunInfo


class _Blob:
    """An image-only 'method': the same fixed random point cloud for every sample; it gives up
    (a counted failure) on every other sample."""

    def __init__(self, n: int) -> None:
        self.verts = torch.randn(n, 3, generator=torch.Generator().manual_seed(0)) * 50.0
        self.calls = 0

    def reconstruct(self, view) -> list[Reconstruction]:
        out = []
        for sid in view.sample_id:
            self.calls += 1
            face = (FaceReconstruction(self.verts.clone(), torch.zeros(1, 3, dtype=torch.long))
                    if self.calls % 2 else FaceReconstruction(None, None, failure="gave up"))
            out.append(Reconstruction(str(sid), [face]))
        return out


def _dataset(mode: str, **options):
    dm = SyntheticDataModule(mode=mode, image_size=64, train_size=0, val_size=0, test_size=4, seed=3,
                             batch_size=2, num_workers=0, facemodel="procedural", options=options, drop_last=False)
    dm.setup("test")
    return dm.datasets["test"], dm.facemodel


@pytest.mark.parametrize("mode", ["single", "multiview"])
def test_sample_yaw_matches_ground_truth(mode: str, tmp_path: Path) -> None:
    test, fm = _dataset(mode, **({"view_yaws": [-45.0, 0.0, 20.0]} if mode == "multiview" else {}))
    want: dict[str, float] = {}
    for i in range(len(test)):
        s = test[i]
        yaws = [abs(math.degrees(float(y))) for y in torch.as_tensor(s.yaw).reshape(-1)]
        if mode == "single":
            want[str(s.sample_id)] = yaws[0]
        else:
            want.update({f"{s.sample_id}#v{k}": y for k, y in enumerate(yaws)})
    plan = EvaluationPlan(protocols={"true_error": {}}, inputs=("image",), owner="blob")
    results, n, _ = run_evaluation(_Blob(test[0].vertices.shape[-2]),
                                   test, plan, batch_size=2, accelerator="cpu")
    res = results["true_error"]
    assert n == 4 and res.failures and res.per_sample["mean"]  # both scored units and failures
    assert set(res.sample_yaw) == set(want)
    assert res.sample_yaw == pytest.approx(want)
    if mode == "multiview":
        assert sorted({round(v) for v in want.values()}) == [0, 20, 45]
    with ResultsStore(tmp_path / "lb.sqlite") as store:
        rid = store.record_run(RunInfo(method="blob", dataset=f"synthetic-{mode}", protocol="true_error"), res)
        sv = store.sample_values(rid, "mean")
        assert sv.yaw == pytest.approx(want)  # scored and failed units alike
