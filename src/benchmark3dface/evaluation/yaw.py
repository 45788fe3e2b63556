"""The ground-truth |yaw| of every scored unit, recorded at evaluation time for the per-yaw-bin
boards (docs/leaderboard.md, "Per-yaw-bin boards").

The evaluation may read ground truth (methods never do): :class:`GtYawRecorder` runs beside the
protocols in :func:`~.loop.evaluate_batch` and keeps, per unit id, the |yaw| in degrees from
``Sample.yaw`` (radians) of the protocol target:

- a sample with one yaw (single image): ``"<id>"``;
- a sample with one yaw per view or per face (set, multi-view, multi-face): ``"<id>#v<k>"``
  (view k, the true-error / NME unit of a set or multi-view sample scored per view) and
  ``"<id>#<k>"`` (GT face k of a multi-face image) get yaw ``k``; ``"<id>"`` itself (a set
  scored as a whole against its identity shape, a multi-face image in the detection protocol)
  gets the mean |yaw| of its views / faces.

Its records are DDP-safe like every protocol's (gathered, de-duplicated by id); a unit without a
known yaw (an unreadable sample, a dataset without ``yaw``) gets none and is counted outside the
bins. :func:`attach_sample_yaw` copies, into each protocol result, the yaw of the units that
result scored or failed (``ProtocolResult.sample_yaw``), which the results store keeps per
sample row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from ..metrics.base import ProtocolMetric, as_samples
from ..results import ProtocolResult

#: key of the recorder in the metrics dict the evaluation loop updates (never a protocol name)
YAW_KEY = "__gt_yaw__"


def unit_yaws(sample_id: str, yaw: Any) -> dict[str, float]:
    """Unit id -> |yaw| (degrees) for one sample whose ``Sample.yaw`` is ``yaw`` (radians,
    scalar or one per view / face); {} when unknown. See the module docstring."""
    if yaw is None:
        return {}
    y = torch.as_tensor(yaw, dtype=torch.float64).detach().to("cpu").reshape(-1)
    deg = [abs(math.degrees(float(v))) for v in y.tolist()]
    if not deg:
        return {}
    out: dict[str, float] = {}
    if len(deg) > 1:
        for k, d in enumerate(deg):
            if math.isfinite(d):
                out[f"{sample_id}#v{k}"] = d
                out[f"{sample_id}#{k}"] = d
    finite = [d for d in deg if math.isfinite(d)]
    if finite and len(finite) == len(deg):
        out[sample_id] = float(np.mean(finite))
    return out


class GtYawRecorder(ProtocolMetric):
    """Records ``unit id -> |yaw|`` (degrees) of every evaluated sample (module docstring).
    Not a protocol: never registered, never stored as a run."""

    name: ClassVar[str] = "gt_yaw"
    value_names: ClassVar[tuple[str, ...]] = ("abs_yaw_deg",)
    optional_values: ClassVar[tuple[str, ...]] = ("abs_yaw_deg",)
    units: ClassVar[dict[str, str]] = {"abs_yaw_deg": "deg"}

    def update(self, reconstructions: Any, batch: Any) -> None:
        ids: list[str] = []
        vals: list[list[float]] = []
        for k, sample in enumerate(as_samples(batch)):
            sid = str(sample.sample_id) if sample.sample_id not in (None, "") else f"#{k}"
            for uid, d in unit_yaws(sid, sample.yaw).items():
                ids.append(uid)
                vals.append([d])
        if ids:
            self.record(ids, vals, [""] * len(ids))

    def yaws(self) -> dict[str, float]:
        """Unit id -> |yaw| degrees over everything recorded (after a DDP sync, all ranks)."""
        res = self.compute()
        return dict(res.per_sample.get("abs_yaw_deg", {}))


def attach_sample_yaw(results: Mapping[str, ProtocolResult], yaws: Mapping[str, float]) -> None:
    """Fill each result's ``sample_yaw`` with the yaw of the units it scored or failed."""
    for res in results.values():
        if not isinstance(res, ProtocolResult):
            continue
        units: set[str] = set(res.failures)
        for values in res.per_sample.values():
            units.update(values)
        res.sample_yaw = {u: float(yaws[u]) for u in sorted(units) if u in yaws}


__all__ = ["YAW_KEY", "GtYawRecorder", "attach_sample_yaw", "unit_yaws"]
