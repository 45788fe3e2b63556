"""Paired comparison of two methods (or two runs) on the samples both evaluated.

``compare_methods(store, "deep3d", "prnet")`` takes, in every (dataset, split, protocol) where both
methods have finished runs, the best run of each (as ranked by :mod:`.table`, on the
coverage-aware score) and runs a Wilcoxon signed-rank test per metric with per-sample values
(:func:`.stats.paired_test`) on the samples both runs scored, reporting the samples each side
failed next to it. Directions are the protocol's declarations stored with the runs (guessed
from the name only for runs recorded without one). A side written ``run:ID`` names one run
instead of a method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .directions import Direction
from .records import StoredRun
from .stats import PairedComparison, paired_test
from .store import ResultsStore
from .table import build_tables, declared_direction


@dataclass(frozen=True)
class GroupComparison:
    """The comparisons of two runs in one (dataset, split, protocol)."""

    dataset: str
    split: str
    protocol: str
    run_a: StoredRun
    run_b: StoredRun
    results: list[PairedComparison]

    def as_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset, "split": self.split, "protocol": self.protocol,
            "run_a": self.run_a.id, "run_b": self.run_b.id,
            "results": [r.as_dict() for r in self.results],
        }


def run_label(run: StoredRun) -> str:
    return f"{run.method}#{run.id}"


def compare_runs(
    store: ResultsStore,
    run_a: StoredRun,
    run_b: StoredRun,
    *,
    metrics: Sequence[str] | None = None,
    label_a: str | None = None,
    label_b: str | None = None,
    alpha: float = 0.05,
    directions: Mapping[str, Direction] | None = None,
) -> list[PairedComparison]:
    """Wilcoxon tests of ``run_a`` vs ``run_b`` for ``metrics`` (default: every metric both
    runs have per-sample values for, in ``run_a``'s metric order), on the samples both
    scored; each result lists the samples each run failed."""
    if metrics is None:
        shared = set(store.per_sample_metrics(run_a.id)) & set(store.per_sample_metrics(run_b.id))
        order = list(run_a.metrics) + sorted(shared - set(run_a.metrics))
        metrics = [m for m in order if m in shared]
    out = []
    for metric in metrics:
        both = store.sample_values_of_runs([run_a.id, run_b.id], metric)
        a, b = both[run_a.id], both[run_b.id]
        direction, source = declared_direction([run_a, run_b], metric, directions)
        out.append(
            paired_test(
                a.ids, a.values, b.ids, b.values,
                direction=direction, alpha=alpha,
                label_a=label_a or run_label(run_a), label_b=label_b or run_label(run_b),
                metric=metric, failed_a=a.failures, failed_b=b.failures, direction_source=source,
            )
        )
    return out


def _parse_run_spec(spec: str) -> int | None:
    if spec.startswith("run:"):
        try:
            return int(spec[4:])
        except ValueError:
            raise ValueError(f"bad run spec {spec!r}: expected run:<integer id>") from None
    return None


def compare_methods(
    store: ResultsStore,
    a: str,
    b: str,
    *,
    dataset: str | None = None,
    split: str | None = None,
    protocol: str | None = None,
    metric: str | None = None,
    alpha: float = 0.05,
    directions: Mapping[str, Direction] | None = None,
) -> list[GroupComparison]:
    """Compare methods (or ``run:ID`` runs) ``a`` and ``b`` in every group they share.

    Raises ``ValueError`` with the reason when there is nothing to compare.
    """
    id_a, id_b = _parse_run_spec(a), _parse_run_spec(b)
    metrics = None if metric is None else [metric]
    if id_a is not None or id_b is not None:
        if id_a is None or id_b is None:
            raise ValueError("compare either two methods or two run:ID specs, not one of each")
        ra, rb = store.get_run(id_a), store.get_run(id_b)
        if ra.group != rb.group:
            raise ValueError(
                f"runs {id_a} and {id_b} are in different groups ({'/'.join(ra.group)} vs "
                f"{'/'.join(rb.group)}); paired tests need the same dataset, split and protocol"
            )
        return [
            GroupComparison(*ra.group, ra, rb, compare_runs(
                store, ra, rb, metrics=metrics, alpha=alpha, directions=directions))
        ]
    if a == b:
        raise ValueError(f"cannot compare method {a!r} with itself; use run:ID specs for two runs")
    runs = store.runs(dataset=dataset, split=split, protocol=protocol, method=[a, b])
    found = {r.method for r in runs}
    missing = [m for m in (a, b) if m not in found]
    if missing:
        raise ValueError(
            f"no finished runs of {', '.join(map(repr, missing))} match the filters "
            f"(dataset={dataset}, split={split}, protocol={protocol})"
        )
    out = []
    for table in build_tables(runs, metric=metric, directions=directions, store=store):
        best = {row.run.method: row.run for row in table.rows}
        if a in best and b in best:
            out.append(GroupComparison(
                table.dataset, table.split, table.protocol, best[a], best[b],
                compare_runs(store, best[a], best[b], metrics=metrics, label_a=a, label_b=b,
                             alpha=alpha, directions=directions),
            ))
    if not out:
        raise ValueError(f"{a!r} and {b!r} have no (dataset, split, protocol) in common")
    return out
