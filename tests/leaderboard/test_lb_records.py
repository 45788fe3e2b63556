"""Plain-type inputs of the store: result coercion, config hashing, metric directions."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark3dface.leaderboard import MetricValue, RunInfo, coerce_result, config_hash
from benchmark3dface.leaderboard.directions import metric_direction
from benchmark3dface.leaderboard.schema import ALL_METRICS


def test_config_hash_ignores_key_order_and_sees_values() -> None:
    a = {"lr": 1e-4, "model": {"depth": 50, "heads": ["id", "exp"]}}
    b = {"model": {"heads": ["id", "exp"], "depth": 50}, "lr": 1e-4}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 64
    assert config_hash(a) != config_hash({**a, "lr": 2e-4})
    with pytest.raises(ValueError, match="NaN"):
        config_hash({"lr": math.nan})
    with pytest.raises(ValueError, match="JSON"):
        config_hash({"obj": object()})


def test_run_info_validates_and_builds_key() -> None:
    info = RunInfo(method="deep3d", dataset="micc", protocol="rmse", config={"a": 1}, seed=np.int64(3))
    assert info.seed == 3 and isinstance(info.seed, int)
    assert info.key.config_hash == config_hash({"a": 1})
    assert (info.key.method, info.key.split) == ("deep3d", "test")
    with pytest.raises(ValueError, match="method"):
        RunInfo(method="", dataset="micc", protocol="rmse")
    with pytest.raises(ValueError, match="seed"):
        RunInfo(method="m", dataset="micc", protocol="rmse", seed=1.5)  # type: ignore[arg-type]
    assert RunInfo(method="m", dataset="d", protocol="p", hardware={"gpu": "A100"}).hardware_text() == '{"gpu": "A100"}'


def test_coerce_result_forms() -> None:
    res = coerce_result({
        "metrics": {"nme": {"value": np.float32(2.5), "std": 1.0, "n": 3, "n_failed": 1},
                    "auc": 0.7, "empty": float("nan")},
        "per_sample": {"nme": {"a": 1.0, "b": np.float64(2.0), "c": float("inf")},
                       "rmse": (["x", "y"], np.array([0.5, 0.25]))},
        "failures": {"d": "no face", "rmse": {"z": "ICP diverged"}},
    })
    assert list(res.metrics) == ["nme", "auc", "empty"]  # order kept: first = primary
    assert res.metrics["nme"] == MetricValue(2.5, 1.0, 3, 1)
    assert res.metrics["empty"].value is None
    assert res.per_sample == {"nme": {"a": 1.0, "b": 2.0}, "rmse": {"x": 0.5, "y": 0.25}}
    assert res.failures == {ALL_METRICS: {"d": "no face"}, "rmse": {"z": "ICP diverged"},
                            "nme": {"c": "non-finite value"}}
    rows = res.sample_rows()
    assert len(rows) == 2 + 2 + 3
    assert {(r["metric"], r["sample_id"]) for r in rows if r["value"] is None} == {
        (ALL_METRICS, "d"), ("rmse", "z"), ("nme", "c")}
    # an object with attributes (a protocol result) works too
    obj = SimpleNamespace(metrics={"nme": 1.0}, per_sample={"nme": {"a": 1.0}}, failures=None)
    assert coerce_result(obj).per_sample == {"nme": {"a": 1.0}}


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"per_sample": {}}, "needs the key 'metrics'"),
        ({"metrics": {}, "extra": 1}, "needs the key 'metrics'"),
        ({"metrics": {"nme": {"mean": 1}}}, "expected keys 'value'"),
        ({"metrics": {"nme": "high"}}, "must be a number"),
        ({"metrics": {"*": 1.0}}, "other than"),
        ({"metrics": {}, "per_sample": {"nme": [1.0, 2.0]}}, "expected"),
        ({"metrics": {}, "per_sample": {"nme": (["a"], [1.0, 2.0])}}, "1 sample ids but 2"),
        ({"metrics": {}, "per_sample": {"nme": (["a", "a"], [1.0, 2.0])}}, "duplicate"),
        ({"metrics": {"nme": {"value": 1, "n": -1}}}, ">= 0"),
        (42, "cannot read a run result"),
    ],
)
def test_coerce_result_rejects_bad_input(bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        coerce_result(bad)


@pytest.mark.parametrize(
    "name, direction",
    [("nme", "lower"), ("NME_30_60", "lower"), ("rmse", "lower"), ("p2s_mean_mm", "lower"),
     ("median", "lower"), ("depth_map_err", "lower"), ("unknown_thing", "lower"),
     ("auc_0_7", "higher"), ("AUC@0.07", "higher"), ("accuracy", "higher"), ("iou", "higher"),
     ("psnr", "higher"), ("success_rate", "higher"), ("failure_rate", "lower")],
)
def test_metric_direction(name: str, direction: str) -> None:
    assert metric_direction(name) == direction


def test_metric_direction_override() -> None:
    assert metric_direction("nme", {"nme": "higher"}) == "higher"
    with pytest.raises(ValueError, match="override"):
        metric_direction("nme", {"nme": "up"})  # type: ignore[dict-item]
