"""Leaderboard tables: finished runs grouped by (dataset, split, protocol) and ranked.

In each group, runs are ranked on a *primary metric*: the one asked for, else the first
metric the protocol reported in the group's first run. Its direction is the one the protocol
declared and the store kept with the runs; for runs recorded without a declaration it is
guessed from the metric name (:mod:`.directions`) and the table says so.

**Ranking score (failures cannot help).** When the runs have per-sample values of the
per-sample metric the primary metric summarises (its declared ``sample_metric``; for old
runs, the metric of the same name), every run is scored on the same samples: the union of
the sample ids any run of the table scored or failed. A run's *score* is the mean of its
per-sample values over that union, a failed or missing sample counted at the worst value any
run got on that sample (:func:`.stats.penalised_scores`). Runs rank on the score; equal
scores rank by coverage (samples scored / samples in the union), then the most recent run.
The plain mean over the samples a run scored stays in the primary metric's column. Runs
with no per-sample value of that metric come after the scored runs (on their plain mean);
when no run has per-sample values the table ranks on the plain mean and says so.

By default only the best run of each method is kept; runs without any value come last.
Ranks are competition ranks (1, 2, 2, 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .directions import Direction, DirectionSource, direction_arrow, resolve_direction
from .records import MetricValue, StoredRun, input_label
from .stats import PENALTY_RULE, CoverageScore, penalised_scores

if TYPE_CHECKING:  # pragma: no cover
    from .store import ResultsStore


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    run: StoredRun
    #: the coverage-aware ranking score (None when the table ranks on the plain mean, or for
    #: a run without per-sample values of the score metric)
    score: CoverageScore | None = None

    def value(self, metric: str) -> float | None:
        m = self.run.metrics.get(metric)
        return None if m is None else m.value


@dataclass(frozen=True)
class LeaderboardTable:
    """One ranked table: the runs of one (dataset, split, protocol).

    ``directions`` / ``units``: per metric, as declared by the protocol (stored with the
    runs); ``direction_sources`` says, per metric, whether the direction was ``declared``,
    an ``override`` or ``guessed`` from the name. ``score_metric``: the per-sample metric
    whose penalised mean over all ``n_total`` samples ranks the runs (None: ranked on the
    plain mean of ``primary_metric``).
    """

    dataset: str
    split: str
    protocol: str
    primary_metric: str
    metrics: list[str]
    directions: dict[str, Direction]
    rows: list[LeaderboardRow]
    units: dict[str, str] = field(default_factory=dict)
    direction_sources: dict[str, DirectionSource] = field(default_factory=dict)
    score_metric: str | None = None
    n_total: int = 0

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.split} / {self.protocol}"

    @property
    def ranked_on_score(self) -> bool:
        return self.score_metric is not None

    @property
    def guessed(self) -> list[str]:
        """Metrics whose direction was guessed from the name (no declaration stored)."""
        return [m for m in self.metrics if self.direction_sources.get(m) == "guessed"]

    def label(self, metric: str) -> str:
        """Column label: name, unit, direction arrow (``?`` when guessed)."""
        unit = self.units.get(metric)
        text = f"{metric} [{unit}]" if unit else metric
        text += f" {direction_arrow(self.directions[metric])}"
        if self.direction_sources.get(metric) == "guessed":
            text += "?"
        if metric == self.primary_metric and not self.ranked_on_score:
            text += " *"
        return text

    @property
    def score_label(self) -> str:
        return f"score {direction_arrow(self.directions[self.primary_metric])} *"

    def notes(self) -> list[str]:
        """Plain-text notes on how the table was ranked (captions, exports, report)."""
        out = []
        if self.ranked_on_score:
            out.append(
                f"Ranked on the score: the mean of the per-sample values of "
                f"'{self.score_metric}' over all {self.n_total} samples of the table; "
                f"{PENALTY_RULE}. Coverage: samples "
                f"the run scored / {self.n_total}. The {self.primary_metric} column is the "
                "protocol's own summary over the scored samples."
            )
            unscored = sum(1 for r in self.rows if r.score is None)
            if unscored:
                out.append(f"{unscored} run(s) without per-sample {self.score_metric} values "
                           "are ranked after the scored runs, on their plain mean.")
        else:
            out.append(f"Ranked on the plain mean {self.primary_metric} (no per-sample values "
                       "stored: failures are not counted; see the failed column).")
        if self.guessed:
            out.append("? direction guessed from the metric name (runs recorded without the "
                       "protocol's declaration).")
        return out

    def best_value(self, metric: str) -> float | None:
        """The best value of ``metric`` over the rows (under its direction)."""
        values = [v for r in self.rows if (v := r.value(metric)) is not None]
        if not values:
            return None
        return min(values) if self.directions[metric] == "lower" else max(values)

    def best_score(self) -> float | None:
        values = [r.score.score for r in self.rows if r.score is not None and r.score.score is not None]
        if not values:
            return None
        return min(values) if self.directions[self.primary_metric] == "lower" else max(values)


def _rank_key(
    run: StoredRun, metric: str, direction: Direction, scores: Mapping[int, CoverageScore] | None
) -> tuple[int, float, float]:
    """(tier, signed value, -coverage): tier 0 ranked on the score (or on the plain mean when
    the table has no scores), 1 no per-sample values in a scored table (plain mean), 2 no
    value at all. Runs with equal keys share a rank."""
    sign = 1.0 if direction == "lower" else -1.0
    if scores:
        s = scores.get(run.id)
        if s is not None and s.score is not None:
            return (0, sign * s.score, -s.coverage)
    m = run.metrics.get(metric)
    if m is None or m.value is None:
        return (2, 0.0, 0.0)
    return (1 if scores else 0, sign * m.value, 0.0)


def rank_runs(
    runs: Sequence[StoredRun],
    metric: str,
    direction: Direction,
    *,
    best_only: bool = True,
    scores: Mapping[int, CoverageScore] | None = None,
) -> list[LeaderboardRow]:
    """Rank ``runs`` on ``scores`` (run id -> :class:`~.stats.CoverageScore`, see the module
    docstring) or, without scores, on the plain value of ``metric``; with ``best_only`` keep
    the best run of each method. Ties on the value go to the most recent run."""

    def order(run: StoredRun) -> tuple[tuple[int, float, float], float, int]:
        ended = run.ended_at.timestamp() if run.ended_at else 0.0
        return (_rank_key(run, metric, direction, scores), -ended, run.id)

    ordered = sorted(runs, key=order)
    if best_only:
        seen: set[str] = set()
        kept = []
        for run in ordered:
            if run.method not in seen:
                seen.add(run.method)
                kept.append(run)
        ordered = kept
    rows: list[LeaderboardRow] = []
    prev: tuple[int, float, float] | None = None
    rank = 0
    for i, run in enumerate(ordered, start=1):
        key = _rank_key(run, metric, direction, scores)
        if key[0] == 2 or key != prev:
            rank = i
        prev = key
        rows.append(LeaderboardRow(rank=rank, run=run, score=(scores or {}).get(run.id)))
    return rows


def _declared(runs: Sequence[StoredRun], name: str) -> Iterable[str | None]:
    """Stored directions of ``name`` (runs newest first): the metric's own, else that of a
    summary metric whose per-sample metric is ``name``."""
    for run in runs:
        m = run.metrics.get(name)
        if m is not None and m.direction is not None:
            yield m.direction
    for run in runs:
        for m in run.metrics.values():
            if m.sample_metric == name and m.direction is not None:
                yield m.direction


def declared_direction(
    runs: Sequence[StoredRun], name: str, overrides: Mapping[str, Direction] | None = None
) -> tuple[Direction, DirectionSource]:
    """Direction of metric (or per-sample metric) ``name`` for ``runs``: an override, the
    declaration stored with the most recent run that has one, or a guess from the name."""
    newest = sorted(runs, key=lambda r: r.id, reverse=True)
    return resolve_direction(name, _declared(newest, name), overrides)


def score_metric_of(runs: Sequence[StoredRun], metric: str) -> str | None:
    """The per-sample metric whose values back ``metric`` (newest run first): its declared
    ``sample_metric``; None when the protocol declared the metric without one; the metric's
    own name for runs recorded without declarations."""
    for run in sorted(runs, key=lambda r: r.id, reverse=True):
        m = run.metrics.get(metric)
        if m is None:
            continue
        if m.sample_metric:
            return m.sample_metric
        if m.direction is not None:  # declared by the protocol, with no per-sample metric
            return None
    return metric


def coverage_scores(
    store: ResultsStore, runs: Sequence[StoredRun], sample_metric: str, direction: Direction
) -> tuple[dict[int, CoverageScore], int]:
    """Penalised scores of ``runs`` on per-sample ``sample_metric`` (runs without any
    per-sample row of it are left out) and the number of samples in the union."""
    values = store.sample_values_of_runs([r.id for r in runs], sample_metric)
    have = {rid: sv for rid, sv in values.items() if sv.n_total}
    if not have:
        return {}, 0
    failed = {sid for sv in have.values() for sid in sv.failures}
    scores = penalised_scores({rid: (sv.ids, sv.values) for rid, sv in have.items()}, failed,
                              direction=direction)
    return scores, next(iter(scores.values())).n_total


def build_tables(
    runs: Iterable[StoredRun],
    *,
    metric: str | None = None,
    best_only: bool = True,
    directions: Mapping[str, Direction] | None = None,
    store: ResultsStore | None = None,
) -> list[LeaderboardTable]:
    """Group finished runs by (dataset, split, protocol) and rank each group.

    ``metric``: rank on this metric; groups that lack it are left out (``ValueError`` when no
    group has it). ``directions``: per-metric overrides of the stored / guessed directions.
    ``store``: where the per-sample values are read for the coverage-aware ranking score
    (without it, tables rank on the plain mean).
    """
    groups: dict[tuple[str, str, str], list[StoredRun]] = {}
    for run in sorted(runs, key=lambda r: r.id):
        groups.setdefault(run.group, []).append(run)
    tables: list[LeaderboardTable] = []
    available: set[str] = set()
    for (dataset, split, protocol), group in sorted(groups.items()):
        names: list[str] = []
        for run in group:
            names.extend(n for n in run.metrics if n not in names)
        available.update(names)
        if not names:
            continue
        if metric is not None:
            if metric not in names:
                continue
            primary = metric
        else:
            primary = next((r.primary_metric for r in group if r.primary_metric), names[0])
        ordered_names = [primary] + [n for n in names if n != primary]
        resolved = {n: declared_direction(group, n, directions) for n in ordered_names}
        dirs = {n: d for n, (d, _) in resolved.items()}
        newest = sorted(group, key=lambda r: r.id, reverse=True)
        units = {n: next((r.metrics[n].unit for r in newest if n in r.metrics and r.metrics[n].unit), "")
                 for n in ordered_names}
        scores: dict[int, CoverageScore] = {}
        n_total = 0
        key = score_metric_of(group, primary) if store is not None else None
        if key is not None and store is not None:
            scores, n_total = coverage_scores(store, group, key, dirs[primary])
        tables.append(
            LeaderboardTable(
                dataset=dataset, split=split, protocol=protocol, primary_metric=primary,
                metrics=ordered_names, directions=dirs,
                rows=rank_runs(group, primary, dirs[primary], best_only=best_only, scores=scores),
                units=units, direction_sources={n: s for n, (_, s) in resolved.items()},
                score_metric=key if scores else None, n_total=n_total,
            )
        )
    if metric is not None and not tables and groups:
        raise ValueError(
            f"no run has the metric {metric!r}; metrics present: {', '.join(sorted(available))}"
        )
    return tables


def format_value(value: float | None, digits: int = 4) -> str:
    """A metric value with ``digits`` significant digits; an em dash for None."""
    if value is None:
        return "\u2014"
    return f"{value:.{digits}g}"


def format_metric(m: MetricValue | None, digits: int = 4) -> str:
    """``value \u00b1 std`` (or the value alone)."""
    if m is None or m.value is None:
        return "\u2014"
    text = format_value(m.value, digits)
    if m.std is not None:
        text += f" \u00b1 {format_value(m.std, 3)}"
    return text


_YAW_BIN_RE = re.compile(r"^(?P<base>.+?)_(?P<lo>\d+)_(?P<hi>\d+)$")


def yaw_bin_groups(metrics: Iterable[str]) -> dict[str, list[tuple[str, int, int]]]:
    """Metrics named ``<base>_<lo>_<hi>`` (e.g. ``nme_0_30``, ``nme_30_60``) grouped by base,
    bins sorted by ``lo``; only bases with at least two bins. Bounds are degrees of |yaw|."""
    groups: dict[str, list[tuple[str, int, int]]] = {}
    for name in metrics:
        if (m := _YAW_BIN_RE.match(name)) is not None:
            lo, hi = int(m["lo"]), int(m["hi"])
            if lo < hi <= 180:
                groups.setdefault(m["base"], []).append((name, lo, hi))
    return {b: sorted(v, key=lambda x: x[1]) for b, v in groups.items() if len(v) >= 2}


def short_hash(config_hash: str) -> str:
    return config_hash[:8]


def format_coverage(score: CoverageScore | None) -> str:
    """``scored/total`` (an em dash without a score)."""
    if score is None:
        return "\u2014"
    return f"{score.n_scored}/{score.n_total}"


def format_score(score: CoverageScore | None, digits: int = 4) -> str:
    return format_value(None if score is None else score.score, digits)


#: rough printed widths used to fit a table to the terminal
_PROVENANCE_WIDTH, _METRIC_WIDTH, _BASE_WIDTH, _SCORE_WIDTH = 34, 18, 34, 22


def fitted_metrics(table: LeaderboardTable, width: int | None) -> tuple[list[str], bool]:
    """The metrics that fit a terminal ``width`` (ranking metric first, then in order) and
    whether the provenance columns (version, run, seed, config) fit too. The score and
    coverage columns are always shown."""
    if width is None:
        return list(table.metrics), True
    base = _BASE_WIDTH + (_SCORE_WIDTH if table.ranked_on_score else 0)
    metrics = [table.primary_metric] + [m for m in table.metrics if m != table.primary_metric]
    if base + _PROVENANCE_WIDTH + _METRIC_WIDTH * len(metrics) <= width:
        return list(table.metrics), True
    fit = max(1, (width - base) // _METRIC_WIDTH)
    keep = set(metrics[:fit])
    return [m for m in table.metrics if m in keep], False


def rich_table(table: LeaderboardTable, width: int | None = None) -> Table:
    """A rich Table of one leaderboard; the best value of each metric is bold green. With a
    terminal ``width``, columns that do not fit are left out (provenance first, then the
    metrics after the ranking one; the caption says how many). The caption also says how
    the table was ranked (score and penalty rule, or plain mean) and which directions were
    guessed."""
    shown, provenance = fitted_metrics(table, width)
    hidden = len(table.metrics) - len(shown)
    notes = table.notes()
    if hidden:
        notes.append(f"{hidden} more metric(s): widen the terminal or export")
    out = Table(title=escape(table.title), title_justify="left", header_style="bold",
                caption=Text("\n".join(notes)), caption_justify="left")
    out.add_column("#", justify="right")
    out.add_column("method", no_wrap=True)
    out.add_column("inputs")
    if provenance:
        out.add_column("version")
        out.add_column("run", justify="right")
        out.add_column("seed", justify="right")
        out.add_column("config")
    if table.ranked_on_score:
        out.add_column(table.score_label, justify="right", no_wrap=True)
        out.add_column("coverage", justify="right", no_wrap=True)
    for name in shown:
        out.add_column(Text(table.label(name)), justify="right", no_wrap=True)
    out.add_column("n", justify="right")
    out.add_column("failed", justify="right")
    best = {name: table.best_value(name) for name in table.metrics}
    best_score = table.best_score()
    for row in table.rows:
        run = row.run
        cells: list[Text | str] = [str(row.rank), Text(run.method), Text(input_label(run.config))]
        if provenance:
            cells += [Text(run.method_version or ""), str(run.id), str(run.seed), short_hash(run.config_hash)]
        if table.ranked_on_score:
            is_best = row.score is not None and row.score.score is not None and row.score.score == best_score
            cells.append(Text(format_score(row.score), style="bold green" if is_best else ""))
            cells.append(format_coverage(row.score))
        for name in shown:
            m = run.metrics.get(name)
            style = "bold green" if m is not None and m.value is not None and m.value == best[name] else ""
            cells.append(Text(format_metric(m), style=style))
        pm = run.metrics.get(table.primary_metric)
        cells.append("" if pm is None or pm.n is None else str(pm.n))
        cells.append("" if pm is None else str(pm.n_failed))
        out.add_row(*cells)
    return out


def render(tables: Sequence[LeaderboardTable], console: Console) -> None:
    """Print the tables (or a note when there is nothing to show)."""
    if not tables:
        console.print("[yellow]no finished runs match the filters[/yellow]")
        return
    console.print(Group(*(rich_table(t, console.width) for t in tables)))
    console.print(
        "\u2193 lower is better, \u2191 higher is better (? guessed from the name), * ranking "
        "column; n / failed are of the ranking metric"
    )
