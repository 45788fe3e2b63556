"""The base class of every protocol: a torchmetrics ``Metric`` with per-sample records.

Each scored unit (a sample, or one face of a multi-face image, keyed ``"<sample_id>#<k>"``)
becomes one *record*: its id, a fixed-length vector of per-sample values (``value_names``) and
a failure reason ("" when it was scored). Records are kept in DDP-safe list states of 1-D
tensors reduced by concatenation:

- ids and reasons are UTF-8 bytes (``uint8``) plus their lengths, so the strings survive
  ``all_gather`` (every state is gathered in the same rank order, so bytes and lengths stay
  aligned);
- values are a flat ``float64`` vector (records x values).

After a DDP sync torchmetrics turns each list state into one tensor (and an idle rank
contributes an empty float tensor), so decoding accepts both forms and casts dtypes back.
Records with the same id (``DistributedSampler`` pads the last batch by repeating samples)
are counted once: the first occurrence wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from ..data.sample import Sample
from ..contracts import FaceReconstruction, Reconstruction
from ..results import DIRECTIONS, Curve, Direction, MetricValue, ProtocolResult, ced_fractions


def encode_strings(strings: Sequence[str], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Strings -> (uint8 bytes, int64 lengths), both 1-D."""
    raw = [s.encode("utf-8") for s in strings]
    lengths = torch.tensor([len(r) for r in raw], dtype=torch.int64, device=device)
    joined = b"".join(raw)
    data = torch.tensor(list(joined), dtype=torch.uint8, device=device) if joined else torch.zeros(
        0, dtype=torch.uint8, device=device)
    return data, lengths


def decode_strings(data: Tensor, lengths: Tensor) -> list[str]:
    """Inverse of ``encode_strings`` (accepts float tensors left by an empty-rank sync)."""
    raw = bytes(data.detach().to("cpu", torch.int64).to(torch.uint8).tolist())
    out, pos = [], 0
    for n in lengths.detach().to("cpu", torch.int64).tolist():
        out.append(raw[pos:pos + n].decode("utf-8"))
        pos += n
    return out


def _cat_state(state: Tensor | list[Tensor]) -> Tensor:
    if isinstance(state, Tensor):
        return state.reshape(-1)
    if len(state) == 0:
        return torch.zeros(0)
    return torch.cat([s.reshape(-1).to("cpu") for s in state])


def as_samples(batch: Sample | Sequence[Sample]) -> list[Sample]:
    """A collated batch (a ``Sample`` whose ``sample_id`` is a list) or a list of samples ->
    list of per-sample ``Sample`` views (tensor fields indexed, list fields picked)."""
    if not isinstance(batch, Sample):
        return list(batch)
    if not isinstance(batch.sample_id, list):
        return [batch]
    n = len(batch.sample_id)
    out = []
    for i in range(n):
        kw: dict[str, Any] = {}
        for f in fields(Sample):
            v = getattr(batch, f.name)
            if f.name == "kind" or v is None:
                kw[f.name] = v
            elif isinstance(v, list):
                kw[f.name] = v[i] if len(v) == n else v
            elif isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == n:
                item = v[i]
                kw[f.name] = item.item() if item.ndim == 0 and f.name in ("labelled", "identity") else item
            else:
                kw[f.name] = v
        out.append(Sample(**kw))
    return out


def pair_up(reconstructions: Sequence[Reconstruction] | Reconstruction,
            batch: Sample | Sequence[Sample]) -> list[tuple[Reconstruction | None, Sample]]:
    """Match reconstructions to samples: by ``sample_id`` when every reconstruction has one,
    else by position. A sample without a reconstruction gets ``None`` (scored as a failure)."""
    samples = as_samples(batch)
    recs = [reconstructions] if isinstance(reconstructions, Reconstruction) else list(reconstructions)
    if recs and all(r.sample_id for r in recs) and all(s.sample_id for s in samples):
        by_id = {r.sample_id: r for r in recs}
        return [(by_id.get(s.sample_id), s) for s in samples]
    if len(recs) != len(samples):
        raise ValueError(f"{len(recs)} reconstructions for {len(samples)} samples and no sample ids to match them")
    return list(zip(recs, samples))


def mean_std(values: np.ndarray, n_failed: int, unit: str) -> MetricValue:
    """Mean and (population) standard deviation over samples."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return MetricValue(math.nan, math.nan, 0, n_failed, unit)
    return MetricValue(float(v.mean()), float(v.std()), int(v.size), n_failed, unit)


def ced_curve(errors: np.ndarray, n_failed: int, x_max: float, steps: int = 201, x_label: str = "") -> Curve:
    """Cumulative error distribution as a ``Curve``: fraction of all samples (failures and
    non-finite errors included, as +inf) with error <= x for ``steps`` values of x in
    [0, x_max] (:func:`benchmark3dface.results.ced_fractions`); all zeros when there are no
    samples at all."""
    xs = np.linspace(0.0, x_max, steps)
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    finite = np.isfinite(e)
    n_all = int(n_failed) + int((~finite).sum())
    ys = np.zeros_like(xs) if e.size + n_all == 0 else ced_fractions(e[finite], n_all, xs)
    return Curve(xs.tolist(), ys.tolist(), x_label, "fraction of samples")


class ProtocolMetric(Metric):
    """Base class: subclasses set ``name``, ``value_names``, ``units``, implement ``update``
    (calling ``record``) and ``summarise``.

    Every number a protocol reports declares its unit and direction, so the leaderboard never
    guesses them from names: ``units`` maps a per-sample value or summary name to its unit,
    ``directions`` to ``"lower"`` / ``"higher"`` (is better); a name not in ``directions``
    takes the protocol-wide ``higher_is_better`` (False: every number is an error).
    ``sample_metrics`` maps a summary name to the per-sample value it summarises (the
    leaderboard ranks on the mean of those per-sample values over every sample, failures at a
    penalty); a summary named like a required value summarises that value unless listed.
    ``compute`` writes these declarations into each ``MetricValue``.
    """

    name: ClassVar[str] = "protocol"
    value_names: ClassVar[tuple[str, ...]] = ("error",)
    #: values that may be NaN on a scored record (e.g. an unknown yaw)
    optional_values: ClassVar[tuple[str, ...]] = ()
    #: unit of each per-sample value / summary number ("mm", "%", "" dimensionless ...)
    units: ClassVar[dict[str, str]] = {}
    #: which values are better, per name, where it differs from ``higher_is_better``
    directions: ClassVar[dict[str, Direction]] = {}
    #: summary name -> per-sample value it summarises (None: no single one, e.g. a yaw bin)
    sample_metrics: ClassVar[dict[str, str | None]] = {}
    full_state_update: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False
    #: the protocol-wide direction of every name not in ``directions``
    higher_is_better: ClassVar[bool] = False

    @classmethod
    def direction_of(cls, name: str) -> Direction:
        """``"lower"`` or ``"higher"``: which values of the number ``name`` are better."""
        direction = cls.directions.get(name, "higher" if cls.higher_is_better else "lower")
        if direction not in DIRECTIONS:
            raise ValueError(f"{cls.__name__}.directions[{name!r}] must be 'lower' or 'higher', got {direction!r}")
        return direction

    @classmethod
    def sample_metric_of(cls, name: str) -> str | None:
        """The per-sample value the summary ``name`` summarises (see ``sample_metrics``)."""
        if name in cls.sample_metrics:
            return cls.sample_metrics[name]
        return name if name in cls.value_names and name not in cls.optional_values else None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("rec_id_bytes", default=[], dist_reduce_fx="cat")
        self.add_state("rec_id_len", default=[], dist_reduce_fx="cat")
        self.add_state("rec_values", default=[], dist_reduce_fx="cat")
        self.add_state("rec_reason_bytes", default=[], dist_reduce_fx="cat")
        self.add_state("rec_reason_len", default=[], dist_reduce_fx="cat")

    # -- records -----------------------------------------------------------------------------
    def record(self, ids: Sequence[str], values: Tensor | np.ndarray | Sequence[Sequence[float]],
               reasons: Sequence[str | None]) -> None:
        """Store records: ``values`` is (len(ids), len(value_names)); a non-empty reason marks a
        failure (its values are kept as given, NaN where unknown). A scored record whose
        required values (all but ``optional_values``) are not finite becomes a failure
        ("non-finite score")."""
        if len(ids) == 0:
            return
        vals = torch.as_tensor(np.asarray(values, dtype=np.float64) if not isinstance(values, Tensor) else values,
                               dtype=torch.float64).detach().to("cpu").reshape(len(ids), len(self.value_names)).clone()
        reasons = [r or "" for r in reasons]
        req = [j for j, n in enumerate(self.value_names) if n not in self.optional_values]
        bad = ~torch.isfinite(vals[:, req]).all(1) if req else torch.zeros(len(ids), dtype=torch.bool)
        for i in torch.nonzero(bad).flatten().tolist():
            if not reasons[i]:
                reasons[i] = "non-finite score"
        ib, il = encode_strings(ids, self.device)
        rb, rl = encode_strings(reasons, self.device)
        self.rec_id_bytes.append(ib)
        self.rec_id_len.append(il)
        self.rec_values.append(vals.reshape(-1).to(self.device))
        self.rec_reason_bytes.append(rb)
        self.rec_reason_len.append(rl)

    def record_failure(self, ids: Sequence[str], reason: str) -> None:
        self.record(ids, np.full((len(ids), len(self.value_names)), np.nan), [reason] * len(ids))

    def records(self) -> tuple[list[str], np.ndarray, list[str], list[int]]:
        """Decoded records (ids, values (n, V), reasons, kept record indices), duplicates
        removed (the first occurrence of an id wins)."""
        ids = decode_strings(_cat_state(self.rec_id_bytes), _cat_state(self.rec_id_len))
        reasons = decode_strings(_cat_state(self.rec_reason_bytes), _cat_state(self.rec_reason_len))
        vals = _cat_state(self.rec_values).to(torch.float64).numpy().reshape(len(ids), len(self.value_names))
        seen: dict[str, int] = {}
        for i, sid in enumerate(ids):
            seen.setdefault(sid, i)
        keep = sorted(seen.values())
        return [ids[i] for i in keep], vals[keep], [reasons[i] for i in keep], keep

    # -- compute -----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Protocol options stored with the result (override)."""
        return {}

    def summarise(self, ids: list[str], values: np.ndarray, reasons: list[str], keep: list[int]
                  ) -> tuple[dict[str, MetricValue], dict[str, Curve]]:
        """Named numbers and curves from the (deduplicated) records. ``values``/``ids``/``reasons``
        cover every record (failures included, ``reasons[i] != ""``); ``keep`` are their indices
        in the raw record order (for subclasses with more per-record states).
        Default: mean +- std over the scored records of every non-optional value."""
        ok = np.array([not r for r in reasons], dtype=bool)
        n_failed = int((~ok).sum())
        metrics = {name: mean_std(values[ok, j], n_failed, self.units.get(name, ""))
                   for j, name in enumerate(self.value_names) if name not in self.optional_values}
        return metrics, {}

    def compute(self) -> ProtocolResult:
        ids, vals, reasons, keep = self.records()
        failures = {sid: r for sid, r in zip(ids, reasons) if r}
        per_sample = {name: {sid: float(vals[i, j]) for i, sid in enumerate(ids) if not reasons[i]}
                      for j, name in enumerate(self.value_names)}
        metrics, curves = self.summarise(ids, vals, reasons, keep)
        for name, m in metrics.items():  # the protocol's declarations travel with each number
            m.unit = m.unit or self.units.get(name, "")
            m.direction = m.direction or self.direction_of(name)
            if m.sample_metric is None:
                m.sample_metric = self.sample_metric_of(name)
        return ProtocolResult(self.name, metrics, per_sample, failures, curves, self.config())


def face_failure(face: FaceReconstruction | None, need_mesh: bool = True) -> str | None:
    """Why ``face`` cannot be scored (``None`` when it can)."""
    if face is None:
        return "no reconstruction"
    if need_mesh:
        return face.validate()
    if face.failure:
        return face.failure
    return None
