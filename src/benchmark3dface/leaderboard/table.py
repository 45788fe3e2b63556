"""Leaderboard tables: finished runs grouped by (dataset, split, protocol) and ranked.

In each group, runs are ranked on a *primary metric*: the one asked for, else the first
metric the protocol reported in the group's first run. Directions come from
:mod:`.directions` (NME, RMSE and other errors: lower is better). By default only the best run
of each method is kept (ties: the most recent); runs without a value for the primary metric
come last. Ranks are competition ranks (1, 2, 2, 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .directions import Direction, direction_arrow, metric_direction
from .records import MetricValue, StoredRun


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    run: StoredRun

    def value(self, metric: str) -> float | None:
        m = self.run.metrics.get(metric)
        return None if m is None else m.value


@dataclass(frozen=True)
class LeaderboardTable:
    """One ranked table: the runs of one (dataset, split, protocol)."""

    dataset: str
    split: str
    protocol: str
    primary_metric: str
    metrics: list[str]
    directions: dict[str, Direction]
    rows: list[LeaderboardRow]

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.split} / {self.protocol}"

    def best_value(self, metric: str) -> float | None:
        """The best value of ``metric`` over the rows (under its direction)."""
        values = [v for r in self.rows if (v := r.value(metric)) is not None]
        if not values:
            return None
        return min(values) if self.directions[metric] == "lower" else max(values)


def _sort_key(run: StoredRun, metric: str, direction: Direction) -> tuple[int, float, float]:
    m = run.metrics.get(metric)
    if m is None or m.value is None:
        return (1, 0.0, 0.0)
    value = m.value if direction == "lower" else -m.value
    ended = run.ended_at.timestamp() if run.ended_at else 0.0
    return (0, value, -ended)


def rank_runs(
    runs: Sequence[StoredRun], metric: str, direction: Direction, *, best_only: bool = True
) -> list[LeaderboardRow]:
    """Rank ``runs`` on ``metric``; with ``best_only`` keep the best run of each method."""
    ordered = sorted(runs, key=lambda r: (_sort_key(r, metric, direction), r.id))
    if best_only:
        seen: set[str] = set()
        kept = []
        for run in ordered:
            if run.method not in seen:
                seen.add(run.method)
                kept.append(run)
        ordered = kept
    rows: list[LeaderboardRow] = []
    prev: float | None = None
    rank = 0
    for i, run in enumerate(ordered, start=1):
        m = run.metrics.get(metric)
        value = None if m is None else m.value
        if value is None or value != prev:
            rank = i
        prev = value
        rows.append(LeaderboardRow(rank=rank, run=run))
    return rows


def build_tables(
    runs: Iterable[StoredRun],
    *,
    metric: str | None = None,
    best_only: bool = True,
    directions: Mapping[str, Direction] | None = None,
) -> list[LeaderboardTable]:
    """Group finished runs by (dataset, split, protocol) and rank each group.

    ``metric``: rank on this metric; groups that lack it are left out (``ValueError`` when no
    group has it). ``directions``: per-metric overrides of the direction table.
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
        dirs = {n: metric_direction(n, directions) for n in ordered_names}
        tables.append(
            LeaderboardTable(
                dataset=dataset, split=split, protocol=protocol, primary_metric=primary,
                metrics=ordered_names, directions=dirs,
                rows=rank_runs(group, primary, dirs[primary], best_only=best_only),
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


#: rough printed widths used to fit a table to the terminal
_PROVENANCE_WIDTH, _METRIC_WIDTH, _BASE_WIDTH = 34, 18, 34


def fitted_metrics(table: LeaderboardTable, width: int | None) -> tuple[list[str], bool]:
    """The metrics that fit a terminal ``width`` (ranking metric first, then in order) and
    whether the provenance columns (version, run, seed, config) fit too."""
    if width is None:
        return list(table.metrics), True
    metrics = [table.primary_metric] + [m for m in table.metrics if m != table.primary_metric]
    if _BASE_WIDTH + _PROVENANCE_WIDTH + _METRIC_WIDTH * len(metrics) <= width:
        return list(table.metrics), True
    fit = max(1, (width - _BASE_WIDTH) // _METRIC_WIDTH)
    keep = set(metrics[:fit])
    return [m for m in table.metrics if m in keep], False


def rich_table(table: LeaderboardTable, width: int | None = None) -> Table:
    """A rich Table of one leaderboard; the best value of each metric is bold green. With a
    terminal ``width``, columns that do not fit are left out (provenance first, then the
    metrics after the ranking one; the caption says how many)."""
    shown, provenance = fitted_metrics(table, width)
    hidden = len(table.metrics) - len(shown)
    caption = f"{hidden} more metric(s): widen the terminal or export" if hidden else None
    out = Table(title=table.title, title_justify="left", header_style="bold", caption=caption)
    out.add_column("#", justify="right")
    out.add_column("method", no_wrap=True)
    if provenance:
        out.add_column("version")
        out.add_column("run", justify="right")
        out.add_column("seed", justify="right")
        out.add_column("config")
    for name in shown:
        label = f"{name} {direction_arrow(table.directions[name])}"
        if name == table.primary_metric:
            label += " *"
        out.add_column(label, justify="right", no_wrap=True)
    out.add_column("n", justify="right")
    out.add_column("failed", justify="right")
    best = {name: table.best_value(name) for name in table.metrics}
    for row in table.rows:
        run = row.run
        cells: list[Text | str] = [str(row.rank), run.method]
        if provenance:
            cells += [run.method_version or "", str(run.id), str(run.seed), short_hash(run.config_hash)]
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
        "\u2193 lower is better, \u2191 higher is better, * ranking metric; "
        "n / failed are of the ranking metric"
    )
