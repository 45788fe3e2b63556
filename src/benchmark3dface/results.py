"""The uniform result every protocol produces and the leaderboard stores: one home for the
result records (``MetricValue``, ``Curve``, ``ProtocolResult``), plain Python with no torch or
Lightning import, so that ``metrics/`` (which writes them) and ``leaderboard/`` (which stores
and reads them) share the same classes. ``benchmark3dface.metrics.result`` re-exports them.

A ``ProtocolResult`` holds:

- ``metrics``: named summary numbers, each a ``MetricValue`` (value, std, n, n_failed, unit,
  direction, and the per-sample value it summarises), with the unit and direction the protocol
  declares (``ProtocolMetric.units`` / ``directions``);
- ``per_sample``: for each per-sample quantity (e.g. ``"rmse"``), a dict ``sample_id -> float``
  over the successfully scored samples (for CED curves and paired tests between methods);
- ``failures``: ``sample_id -> reason`` for every sample that could not be scored (bad
  prediction, missing ground truth ...); failures are counted in ``MetricValue.n_failed`` and
  never silently dropped;
- ``curves``: named curves (CED: fraction of samples with error <= x);
- ``config``: the protocol options that produced the numbers (crop radius, ICP settings ...);
- ``sample_yaw``: ``sample_id -> |yaw|`` in degrees of every scored unit (failures included)
  whose ground-truth yaw the evaluation knew (the sample, view or face's own yaw; a set scored
  as a whole: the mean |yaw| of its views), written by the evaluation loop from ground truth
  (methods never see it) for the per-yaw-bin boards (:data:`YAW_BINS_DEG`).

Everything is plain Python (floats, strings, lists) so ``to_dict`` is JSON-safe. The one CED
computation (:func:`ced_fractions`) lives here too: protocols build their ``Curve``s with it and
the leaderboard its plots.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

#: Which values of a number are better: ``"lower"`` (errors) or ``"higher"`` (scores).
Direction = Literal["lower", "higher"]
DIRECTIONS: tuple[str, ...] = ("lower", "higher")


@dataclass
class MetricValue:
    """One named number (a protocol's output and a leaderboard row's metric).

    Attributes:
        value: the number. A protocol writes NaN when nothing could be scored; the
            leaderboard stores non-finite values as None.
        std: its spread (standard deviation over samples or points, as the protocol states),
            or None when it has none.
        n: number of successfully scored samples (faces for multi-face images) behind ``value``;
            None when a stored result did not record it.
        n_failed: number of samples that were attempted and failed; ``n + n_failed`` is the
            number of samples seen.
        unit: ``"mm"``, ``"%"``, ``""`` (dimensionless) ..., as the protocol declares it
            (``ProtocolMetric.compute`` fills it in); None when not declared (results recorded
            before protocols declared it).
        direction: ``"lower"`` or ``"higher"``: which values are better, as the protocol
            declares it; None for results written before protocols declared it.
        sample_metric: the per-sample value (a key of ``ProtocolResult.per_sample``) whose
            per-sample numbers this one summarises, e.g. ``"nme"`` for ``"nme_mean"``; the
            leaderboard ranks on their mean over every sample, failures counted at a penalty.
            None when it summarises no single per-sample value (e.g. one yaw bin).

    Positional order (value, std, n, n_failed, unit, direction, sample_metric) is part of the
    interface: protocols write ``MetricValue(mean, std, n, n_failed, "mm")``.
    """

    value: float | None
    std: float | None = None
    n: int | None = None
    n_failed: int = 0
    unit: str | None = None
    direction: Direction | None = None
    sample_metric: str | None = None

    def __post_init__(self) -> None:
        self.value = None if self.value is None else float(self.value)
        self.std = None if self.std is None else float(self.std)
        self.n = None if self.n is None else int(self.n)
        self.n_failed = int(self.n_failed)
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"MetricValue.direction must be 'lower', 'higher' or None, got {self.direction!r}")


#: The |yaw| bins (degrees) every board is broken down by: [0, 30], (30, 60], > 60 (3DDFA's
#: AFLW2000-3D bins, the last one open like 3DDFA's code, so a |yaw| beyond 90 counts there).
YAW_BINS_DEG: tuple[tuple[float, float], ...] = ((0.0, 30.0), (30.0, 60.0), (60.0, math.inf))


def yaw_bin_index(abs_yaw_deg: float | None) -> int | None:
    """0, 1, 2 for |yaw| in [0, 30], (30, 60], > 60 degrees (:data:`YAW_BINS_DEG`); None when
    the yaw is unknown (None or NaN)."""
    if abs_yaw_deg is None or not math.isfinite(float(abs_yaw_deg)):
        return None
    a = abs(float(abs_yaw_deg))
    for k, (lo, hi) in enumerate(YAW_BINS_DEG):
        if (a >= lo if k == 0 else a > lo) and a <= hi:
            return k
    return None


def yaw_bin_label(k: int) -> str:
    """``"0-30"``, ``"30-60"``, ``"60-90"`` (the last bin also holds the rare |yaw| > 90)."""
    lo, hi = YAW_BINS_DEG[k]
    return f"{lo:g}-{90 if math.isinf(hi) else hi:g}"


@dataclass
class Curve:
    """A curve such as a cumulative error distribution: ``y[i]`` = fraction of samples with
    error <= ``x[i]`` (failed samples count as errors of +infinity, i.e. never below x)."""

    x: list[float]
    y: list[float]
    x_label: str = ""
    y_label: str = ""


def ced_fractions(values: np.ndarray, n_failed: int, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: for each threshold ``t`` the fraction of *all* samples
    (``len(values) + n_failed``) whose error is ``<= t`` (failed samples count as errors of
    +infinity, i.e. never below a threshold).

    ``values``: (N,) finite errors (any unit; thresholds in the same unit); ``thresholds``:
    (T,) increasing. Returns (T,) in [0, 1]. Raises ``ValueError`` on a negative ``n_failed``,
    a non-finite value (record failures as failures, not NaN) or zero samples in all.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if n_failed < 0:
        raise ValueError(f"n_failed must be >= 0, got {n_failed}")
    if not np.isfinite(values).all():
        raise ValueError("CED values must be finite (record failures as failures, not NaN)")
    n_total = values.size + int(n_failed)
    if n_total == 0:
        raise ValueError("CED curve of zero samples")
    return np.searchsorted(np.sort(values), thresholds, side="right") / n_total


@dataclass
class ProtocolResult:
    """What a protocol's ``compute()`` returns. See the module docstring."""

    protocol: str
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    sample_yaw: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Samples scored successfully (the size of the largest per-sample table)."""
        return max((len(v) for v in self.per_sample.values()), default=0)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def scalars(self) -> dict[str, float]:
        """``{name: value}`` for logging (e.g. ``LightningModule.log_dict``)."""
        return {k: v.value for k, v in self.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN stays a float NaN; use ``allow_nan`` JSON or replace it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProtocolResult:
        return cls(
            protocol=d["protocol"],
            metrics={k: MetricValue(**v) for k, v in d.get("metrics", {}).items()},
            per_sample={k: dict(v) for k, v in d.get("per_sample", {}).items()},
            failures=dict(d.get("failures", {})),
            curves={k: Curve(**v) for k, v in d.get("curves", {}).items()},
            config=dict(d.get("config", {})),
            sample_yaw={str(k): float(v) for k, v in (d.get("sample_yaw") or {}).items()},
        )

    def summary(self) -> str:
        """One line per metric, e.g. ``rmse = 1.660 +- 0.310 mm (n=53, failed=0)``; a declared
        direction is shown as ``(lower is better)``."""
        lines = []
        for name, m in self.metrics.items():
            std = "" if m.std is None or math.isnan(m.std) else f" +- {m.std:.4g}"
            better = f", {m.direction} is better" if m.direction else ""
            value = "None" if m.value is None else f"{m.value:.4g}"
            lines.append(f"{name} = {value}{std} {m.unit or ''} (n={m.n}, failed={m.n_failed}{better})"
                         .replace("  ", " "))
        return "\n".join(lines)
