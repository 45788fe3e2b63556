"""Plain records the results store reads and writes.

The store's input is made of plain Python types so that any protocol result maps onto it
without importing :mod:`benchmark3dface.metrics` (its :class:`MetricValue` is the one class of
:mod:`benchmark3dface.results`, plain Python, shared with the protocols):

* :class:`RunInfo` -- what was run (method, config, seed, dataset, split, protocol, provenance);
* :class:`RunResult` -- what came out: named metrics (value, std, n, n_failed, and the
  protocol's declared direction, unit and per-sample metric), per-sample
  values ``{metric: {sample_id: value}}`` and failure reasons, either per sample for every
  metric ``{sample_id: reason}`` or per metric ``{metric: {sample_id: reason}}``, and the
  ground-truth |yaw| (degrees) of each sample, ``sample_yaw`` ``{sample_id: degrees}``, for the
  per-yaw-bin boards (kept on every per-sample row of that sample).
  :func:`coerce_result` builds one from a mapping or from any object with ``metrics`` /
  ``per_sample`` / ``failures`` attributes.

Units are those of the protocol (millimetres for geometric errors, a fraction or percent for
NME as the protocol defines); the store never converts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..results import DIRECTIONS, MetricValue
from .schema import ALL_METRICS

#: Metric- and sample-level failure maps after normalisation: metric -> sample id -> reason.
FailureMap = dict[str, dict[str, str]]


def canonical_json(config: Mapping[str, Any]) -> str:
    """Canonical JSON text of a config: sorted keys, no whitespace, NaN/inf rejected.

    Raises ``ValueError`` naming the problem when the config is not JSON-serialisable.
    """
    try:
        return json.dumps(
            config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run config must be JSON-serialisable without NaN/inf: {exc}") from exc


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of :func:`canonical_json` (64 characters); key order does not
    matter."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunKey:
    """The natural key of a run; one *finished* run per key is allowed in a store."""

    method: str
    config_hash: str
    seed: int
    dataset: str
    split: str
    protocol: str


@dataclass
class RunInfo:
    """What a run evaluates and where it comes from.

    ``config`` is any JSON-serialisable mapping (the resolved method + data config); its hash
    is part of the run key. ``hardware`` is free text or a mapping (stored as JSON).
    """

    method: str
    dataset: str
    protocol: str
    split: str = "test"
    config: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    method_version: str = ""
    checkpoint: str | None = None
    git_commit: str | None = None
    hardware: str | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("method", "dataset", "protocol", "split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"RunInfo.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"RunInfo.seed must be an integer, got {self.seed!r}")
        self.seed = int(self.seed)
        if not isinstance(self.config, Mapping):
            raise ValueError(f"RunInfo.config must be a mapping, got {type(self.config).__name__}")
        canonical_json(self.config)  # validate early

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @property
    def key(self) -> RunKey:
        return RunKey(
            self.method, self.config_hash, self.seed, self.dataset, self.split, self.protocol
        )

    def hardware_text(self) -> str | None:
        if self.hardware is None or isinstance(self.hardware, str):
            return self.hardware
        return json.dumps(dict(self.hardware), sort_keys=True, default=str)


#: Keys a metric mapping may hold besides ``value``.
METRIC_KEYS = ("std", "n", "n_failed", "direction", "unit", "sample_metric")


def _finite_or_none(x: Any, what: str) -> float | None:
    if x is None:
        return None
    try:
        value = float(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a number or None, got {x!r}") from exc
    return value if math.isfinite(value) else None


def coerce_metric(name: str, raw: Any) -> MetricValue:
    """A :class:`MetricValue` from a number, a mapping with ``value`` (and optional ``std``,
    ``n``, ``n_failed``, ``direction``, ``unit``, ``sample_metric``) or a MetricValue (the one
    class, :mod:`benchmark3dface.results`, or any object with ``value`` and ``n``; the protocol's
    declarations are kept). Non-finite values become None."""
    if isinstance(raw, MetricValue) or (not isinstance(raw, Mapping) and hasattr(raw, "value") and hasattr(raw, "n")):
        raw = {"value": raw.value, "std": getattr(raw, "std", None), "n": raw.n,
               "n_failed": getattr(raw, "n_failed", 0) or 0,
               **{k: getattr(raw, k, None) for k in ("direction", "unit", "sample_metric")}}
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"value", *METRIC_KEYS}
        if "value" not in raw or unknown:
            raise ValueError(
                f"metric {name!r}: expected keys 'value' and optionally "
                f"{', '.join(repr(k) for k in METRIC_KEYS)}; got {sorted(raw)}"
            )
        n = raw.get("n")
        n_failed = raw.get("n_failed") or 0
        if (n is not None and int(n) < 0) or int(n_failed) < 0:
            raise ValueError(f"metric {name!r}: n and n_failed must be >= 0, got {n}, {n_failed}")
        direction = raw.get("direction")
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(
                f"metric {name!r}: direction must be 'lower', 'higher' or None, got {direction!r}"
            )
        unit, sample_metric = raw.get("unit"), raw.get("sample_metric")
        for what, text in (("unit", unit), ("sample_metric", sample_metric)):
            if text is not None and not isinstance(text, str):
                raise ValueError(f"metric {name!r}: {what} must be a string or None, got {text!r}")
        return MetricValue(
            value=_finite_or_none(raw["value"], f"metric {name!r} value"),
            std=_finite_or_none(raw.get("std"), f"metric {name!r} std"),
            n=None if n is None else int(n),
            n_failed=int(n_failed),
            direction=direction,
            unit=unit,
            sample_metric=sample_metric or None,
        )
    return MetricValue(value=_finite_or_none(raw, f"metric {name!r} value"))


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or name == ALL_METRICS:
        raise ValueError(f"{what} must be a non-empty string other than {ALL_METRICS!r}, got {name!r}")
    return name


@dataclass
class RunResult:
    """What a protocol produced for one run, in plain types.

    ``metrics``: name -> :class:`MetricValue` (insertion order is kept; the first metric is the
    run's primary metric for ranking). ``per_sample``: metric -> sample id -> finite value.
    ``failures``: metric (or :data:`~.schema.ALL_METRICS` ``"*"`` for every metric) -> sample id
    -> reason. Build one with :func:`coerce_result`.
    """

    metrics: dict[str, MetricValue] = field(default_factory=dict)
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: FailureMap = field(default_factory=dict)
    #: sample id -> ground-truth |yaw| in degrees (samples without a known yaw are absent)
    sample_yaw: dict[str, float] = field(default_factory=dict)

    def sample_rows(self) -> list[dict[str, Any]]:
        """Rows for ``b3f_sample_values`` (without ``run_id``): values first, then failures;
        a failure for a (metric, sample) that also has a value is dropped (the value wins).
        Every row carries its sample's ``abs_yaw_deg`` (None when unknown)."""
        rows: list[dict[str, Any]] = []
        yaw = self.sample_yaw
        for metric, values in self.per_sample.items():
            rows.extend(
                {"metric": metric, "sample_id": sid, "value": v, "failure_reason": None,
                 "abs_yaw_deg": yaw.get(sid)}
                for sid, v in values.items()
            )
        for metric, reasons in self.failures.items():
            have = self.per_sample.get(metric, {})
            rows.extend(
                {"metric": metric, "sample_id": sid, "value": None, "failure_reason": reason,
                 "abs_yaw_deg": yaw.get(sid)}
                for sid, reason in reasons.items()
                if sid not in have
            )
        return rows


def _coerce_failures(raw: Any) -> FailureMap:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"failures must be a mapping, got {type(raw).__name__}")
    out: FailureMap = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):  # {metric: {sample_id: reason}}
            metric = key if key == ALL_METRICS else _check_name(key, "failure metric name")
            out.setdefault(metric, {}).update({str(s): str(r) for s, r in value.items()})
        else:  # {sample_id: reason}: the sample failed for every metric
            out.setdefault(ALL_METRICS, {})[str(key)] = str(value)
    return out


def coerce_result(obj: Any) -> RunResult:
    """Build a :class:`RunResult` from a RunResult, a mapping with keys ``metrics`` (required),
    ``per_sample`` and ``failures``, or any object with those attributes (a protocol result).

    Per-sample values may be numbers, numpy scalars or arrays paired as
    ``{metric: (sample_ids, values)}``. A non-finite per-sample value is stored as a failure
    with reason ``"non-finite value"``. Raises ``ValueError`` naming the bad field.
    """
    if isinstance(obj, RunResult):
        return obj
    if isinstance(obj, Mapping):
        unknown = set(obj) - {"metrics", "per_sample", "failures", "sample_yaw"}
        if "metrics" not in obj or unknown:
            raise ValueError(
                "a run result mapping needs the key 'metrics' and optionally 'per_sample', "
                f"'failures' and 'sample_yaw'; got keys {sorted(obj)}"
            )
        get = obj.get
    elif hasattr(obj, "metrics"):
        def get(name: str, default: Any = None) -> Any:
            return getattr(obj, name, default)
    else:
        raise ValueError(
            f"cannot read a run result from {type(obj).__name__}: expected a mapping or an "
            "object with 'metrics', 'per_sample' and 'failures'"
        )
    raw_metrics = get("metrics") or {}
    if not isinstance(raw_metrics, Mapping):
        raise ValueError(f"run result 'metrics' must be a mapping, got {type(raw_metrics).__name__}")
    metrics = {
        _check_name(name, "metric name"): coerce_metric(name, value)
        for name, value in raw_metrics.items()
    }
    failures = _coerce_failures(get("failures"))
    per_sample: dict[str, dict[str, float]] = {}
    raw_samples = get("per_sample") or {}
    if not isinstance(raw_samples, Mapping):
        raise ValueError(f"run result 'per_sample' must be a mapping, got {type(raw_samples).__name__}")
    for metric, values in raw_samples.items():
        _check_name(metric, "per-sample metric name")
        if isinstance(values, Mapping):
            ids = [str(s) for s in values.keys()]
            arr = np.asarray(list(values.values()), dtype=np.float64)
        elif isinstance(values, tuple) and len(values) == 2:
            ids = [str(s) for s in values[0]]
            arr = np.asarray(values[1], dtype=np.float64).reshape(-1)
            if len(ids) != arr.shape[0]:
                raise ValueError(
                    f"per-sample metric {metric!r}: {len(ids)} sample ids but {arr.shape[0]} values"
                )
        else:
            raise ValueError(
                f"per-sample metric {metric!r}: expected {{sample_id: value}} or "
                f"(sample_ids, values), got {type(values).__name__}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError(f"per-sample metric {metric!r}: duplicate sample ids")
        finite = np.isfinite(arr)
        per_sample[metric] = {
            sid: float(v) for sid, v, ok in zip(ids, arr.tolist(), finite, strict=True) if ok
        }
        if not finite.all():
            bad = failures.setdefault(metric, {})
            for sid, ok in zip(ids, finite, strict=True):
                if not ok:
                    bad.setdefault(sid, "non-finite value")
    raw_yaw = get("sample_yaw") or {}
    if not isinstance(raw_yaw, Mapping):
        raise ValueError(f"run result 'sample_yaw' must be a mapping, got {type(raw_yaw).__name__}")
    sample_yaw: dict[str, float] = {}
    for sid, deg in raw_yaw.items():
        value = _finite_or_none(deg, f"sample_yaw of {sid!r}")
        if value is not None:
            sample_yaw[str(sid)] = abs(value)
    return RunResult(metrics=metrics, per_sample=per_sample, failures=failures, sample_yaw=sample_yaw)


def input_label(config: Mapping[str, Any] | None) -> str:
    """What a run's method read at test time, for the board's ``inputs`` column: ``image``,
    ``image + landmarks: detector (faceapi)``, or ``ORACLE: ...`` when ground truth was an input
    (``gt:<field>`` inputs or ground-truth landmarks). Empty for runs recorded without it."""
    rec = (config or {}).get("inputs") if isinstance(config, Mapping) else None
    if not isinstance(rec, Mapping):
        return ""
    declared = [str(d) for d in rec.get("declared", [])]
    parts = [d for d in declared if d not in ("lm68", "lm5") and not d.startswith("gt:")]
    lm = rec.get("landmarks")
    if isinstance(lm, Mapping):
        src = str(lm.get("source", ""))
        parts.append(f"landmarks: {src}" + (f" ({lm['backend']})" if lm.get("backend") else "")
                     + (f" sigma={lm['sigma']}" if lm.get("sigma") is not None else ""))
    label = " + ".join(parts)
    oracle = [str(o) for o in rec.get("oracle_input", [])]
    return f"ORACLE ({', '.join(oracle)}): {label}" if oracle else label


@dataclass(frozen=True)
class StoredRun:
    """A run as read back from the store (times are timezone-aware UTC)."""

    id: int
    method: str
    method_version: str
    config: dict[str, Any]
    config_hash: str
    seed: int
    dataset: str
    split: str
    protocol: str
    checkpoint: str | None
    git_commit: str | None
    hardware: str | None
    started_at: _dt.datetime | None
    ended_at: _dt.datetime | None
    status: str
    status_reason: str | None
    n_samples: int
    metrics: dict[str, MetricValue]

    @property
    def key(self) -> RunKey:
        return RunKey(
            self.method, self.config_hash, self.seed, self.dataset, self.split, self.protocol
        )

    @property
    def group(self) -> tuple[str, str, str]:
        """(dataset, split, protocol): runs in one group are comparable."""
        return (self.dataset, self.split, self.protocol)

    @property
    def primary_metric(self) -> str | None:
        """The first metric the protocol reported (used for ranking by default)."""
        return next(iter(self.metrics), None)


@dataclass(frozen=True)
class SampleValues:
    """Per-sample values of one metric of one run.

    ``ids`` (sorted, unicode array) and ``values`` (float64) hold the samples that produced a
    value; ``failures`` maps the samples that did not to their reason (failures recorded for
    every metric included); ``yaw`` maps the samples (scored or failed) whose ground-truth
    |yaw| was recorded to it, in degrees (empty for runs recorded before schema version 4).
    """

    run_id: int
    metric: str
    ids: np.ndarray
    values: np.ndarray
    failures: dict[str, str]
    yaw: dict[str, float] = field(default_factory=dict)

    @property
    def n_total(self) -> int:
        return int(self.values.shape[0]) + len(self.failures)
