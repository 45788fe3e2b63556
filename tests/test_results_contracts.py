"""One home for the shared types: the result records (``benchmark3dface.results``) and the output
contract (``benchmark3dface.contracts``) are single classes used by the protocols, the
leaderboard and the methods, and importing them pulls no Lightning."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_one_metric_value_class_for_protocols_and_leaderboard() -> None:
    from benchmark3dface import results
    from benchmark3dface.leaderboard import MetricValue as LbMetricValue
    from benchmark3dface.leaderboard.records import coerce_metric
    from benchmark3dface.metrics import MetricValue as ProtocolMetricValue

    assert LbMetricValue is ProtocolMetricValue is results.MetricValue
    # a protocol's number (NaN when nothing scored) is stored as None, its declarations kept
    m = coerce_metric("rmse", results.MetricValue(float("nan"), None, 0, 3, "mm", "lower", "rmse"))
    assert (m.value, m.n, m.n_failed, m.unit, m.direction, m.sample_metric) == (None, 0, 3, "mm", "lower", "rmse")
    with pytest.raises(ValueError, match="direction"):
        results.MetricValue(1.0, direction="sideways")  # type: ignore[arg-type]


def test_ced_fractions_by_counting() -> None:
    from benchmark3dface.metrics.base import ced_curve
    from benchmark3dface.results import ced_fractions

    # 4 samples: errors 0.5, 1.0, 3.0 and one failure; thresholds 0, 1, 2, 4
    assert ced_fractions(np.array([3.0, 0.5, 1.0]), 1, np.array([0.0, 1.0, 2.0, 4.0])).tolist() == [0, 0.5, 0.5, 0.75]
    # the protocols' Curve counts a non-finite error as a failure and survives zero samples
    c = ced_curve(np.array([1.0, np.nan]), n_failed=0, x_max=2.0, steps=3)
    assert c.x == [0.0, 1.0, 2.0] and c.y == [0.0, 0.5, 0.5]
    assert ced_curve(np.array([]), 0, 1.0, steps=2).y == [0.0, 0.0]


def test_contract_types_are_shared_and_lightning_free() -> None:
    code = ("import sys, benchmark3dface.contracts as c, benchmark3dface.results as r; "
            "print(int(any(m == 'lightning' or m.startswith('lightning.') for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
    from benchmark3dface import contracts
    from benchmark3dface.methods import FaceReconstruction, Reconstruction
    assert Reconstruction is contracts.Reconstruction and FaceReconstruction is contracts.FaceReconstruction
