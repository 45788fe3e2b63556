"""Per-yaw-bin boards: every ranked table broken down by the ground-truth |yaw| of its samples.

For a table ranked on a per-sample score (:mod:`.table`), each sample (image, view or face:
the protocol's unit) falls into one |yaw| bin, 0-30 / 30-60 / 60-90 degrees
(:data:`benchmark3dface.results.YAW_BINS_DEG`), by the |yaw| the evaluation recorded from
ground truth (``b3f_sample_values.abs_yaw_deg``, schema version 4). A sample's yaw is a property
of the test sample, so a run recorded without yaws (before version 4) takes the yaw another
run of the same table recorded for the same sample id.

In each bin every run of the table is scored exactly like the whole table, restricted to the
bin's samples (:func:`.stats.penalised_scores`): the mean of its per-sample values over all the
bin's samples, **a failed or missing sample counted at its penalty in its own bin** (a failure
never improves a rank, in any bin). Samples with no recorded yaw (unreadable samples, datasets
without yaw) are in no bin; the table says how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..results import YAW_BINS_DEG, yaw_bin_index, yaw_bin_label
from .stats import PENALTY_RULE, penalised_scores
from .table import LeaderboardRow, LeaderboardTable, format_value

if TYPE_CHECKING:  # pragma: no cover
    from .store import ResultsStore

BIN_LABELS: tuple[str, ...] = tuple(yaw_bin_label(k) for k in range(len(YAW_BINS_DEG)))


@dataclass(frozen=True)
class YawBinCell:
    """One run in one |yaw| bin: ``score`` (penalised mean over the bin's ``n_total`` samples;
    None when nobody scored a sample of the bin), ``mean`` (plain mean over the ``n_scored``
    samples the run scored), ``n_failed`` (the run's failed or missing samples of the bin)."""

    score: float | None
    mean: float | None
    n_scored: int
    n_total: int

    @property
    def n_failed(self) -> int:
        return self.n_total - self.n_scored


@dataclass(frozen=True)
class YawBinTable:
    """A table's runs (in the table's rank order) with one :class:`YawBinCell` per bin."""

    table: LeaderboardTable
    metric: str
    bins: tuple[str, ...]
    cells: dict[int, list[YawBinCell]]  # run id -> one cell per bin
    n_per_bin: tuple[int, ...]
    n_unknown: int

    @property
    def rows(self) -> list[LeaderboardRow]:
        return list(self.table.rows)

    @property
    def title(self) -> str:
        return f"{self.table.title} by |yaw|"

    def best(self, k: int) -> float | None:
        """Best score of bin ``k`` over the rows (under the table's direction)."""
        values = [c[k].score for c in self.cells.values() if c[k].score is not None]
        if not values:
            return None
        lower = self.table.directions[self.table.primary_metric] == "lower"
        return min(values) if lower else max(values)

    def notes(self) -> list[str]:
        out = [f"Per |yaw| bin (degrees, ground truth of each sample / view / face; "
               f"{', '.join(f'{b}: {n}' for b, n in zip(self.bins, self.n_per_bin))} samples): "
               f"the mean per-sample '{self.metric}' over every sample of the bin; {PENALTY_RULE}, "
               "within the bin. Rows in the order of the whole table."]
        if self.n_unknown:
            out.append(f"{self.n_unknown} sample(s) have no recorded yaw (unreadable, or no yaw in "
                       "the ground truth) and are in no bin (only in the whole table).")
        return out


def _bin_of(yaws: dict[str, float]) -> dict[str, int]:
    out = {}
    for sid, deg in yaws.items():
        k = yaw_bin_index(deg)
        if k is not None:
            out[sid] = k
    return out


def yaw_bin_table(store: ResultsStore, table: LeaderboardTable) -> YawBinTable | None:
    """The per-yaw-bin breakdown of ``table`` (None when it is not ranked on per-sample values
    or no run of it recorded a yaw)."""
    metric = table.score_metric
    if metric is None or not table.rows:
        return None
    direction = table.directions[table.primary_metric]
    values = store.sample_values_of_runs([r.run.id for r in table.rows], metric)
    yaws: dict[str, float] = {}
    for sv in values.values():
        for sid, deg in sv.yaw.items():
            yaws.setdefault(sid, deg)
    if not yaws:
        return None
    bin_of = _bin_of(yaws)
    universe: set[str] = set()
    for sv in values.values():
        universe.update(sv.ids.tolist())
        universe.update(sv.failures)
    n_unknown = sum(1 for sid in universe if sid not in bin_of)
    cells: dict[int, list[YawBinCell]] = {r.run.id: [] for r in table.rows}
    n_per_bin = []
    for k in range(len(YAW_BINS_DEG)):
        in_bin = {sid for sid in universe if bin_of.get(sid) == k}
        n_per_bin.append(len(in_bin))
        scored: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        failed: set[str] = set()
        for rid, sv in values.items():
            if not sv.n_total:
                continue
            keep = np.array([sid in in_bin for sid in sv.ids.tolist()], dtype=bool)
            scored[rid] = (sv.ids[keep], sv.values[keep])
            failed.update(s for s in sv.failures if s in in_bin)
        scores = penalised_scores(scored, failed, direction=direction) if (scored and in_bin) else {}
        for row in table.rows:
            rid = row.run.id
            s = scores.get(rid)
            if s is None:  # no per-sample values at all, or an empty bin
                cells[rid].append(YawBinCell(None, None, 0, len(in_bin)))
                continue
            own = scored[rid][1]
            cells[rid].append(YawBinCell(s.score, float(own.mean()) if own.size else None,
                                         s.n_scored, s.n_total))
    return YawBinTable(table, metric, BIN_LABELS, cells, tuple(n_per_bin), n_unknown)


def yaw_bin_tables(store: ResultsStore, tables: Sequence[LeaderboardTable]) -> list[YawBinTable]:
    """:func:`yaw_bin_table` of every table that has one."""
    return [yt for t in tables if (yt := yaw_bin_table(store, t)) is not None]


# ------------------------------------------------------------------ rendering / exports
def cell_text(cell: YawBinCell) -> str:
    """``score (scored/total)``; an em dash for an empty bin."""
    if cell.n_total == 0:
        return "\u2014"
    return f"{format_value(cell.score)} ({cell.n_scored}/{cell.n_total})"


def rich_yaw_table(yt: YawBinTable) -> Any:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    t = yt.table
    arrow = "\u2193" if t.directions[t.primary_metric] == "lower" else "\u2191"
    out = Table(title=escape(yt.title), title_justify="left", header_style="bold",
                caption=Text("\n".join(yt.notes())), caption_justify="left")
    out.add_column("#", justify="right")
    out.add_column("method", no_wrap=True)
    for b, n in zip(yt.bins, yt.n_per_bin):
        out.add_column(f"|yaw| {b}\u00b0 {arrow} (scored/n)", justify="right", no_wrap=True)
    out.add_column(f"all {arrow}", justify="right", no_wrap=True)
    best = [yt.best(k) for k in range(len(yt.bins))]
    for row in yt.rows:
        cells = yt.cells[row.run.id]
        line: list[Any] = [str(row.rank), Text(row.run.method)]
        for k, c in enumerate(cells):
            style = "bold green" if c.score is not None and c.score == best[k] else ""
            line.append(Text(cell_text(c), style=style))
        line.append(format_value(None if row.score is None else row.score.score))
        out.add_row(*line)
    return out


def render_yaw_tables(yts: Sequence[YawBinTable], console: Any) -> None:
    if not yts:
        console.print("[yellow]no per-yaw-bin values: the runs shown recorded no ground-truth yaw "
                      "(recorded since schema version 4) or are not ranked on per-sample values[/yellow]")
        return
    from rich.console import Group

    console.print(Group(*(rich_yaw_table(yt) for yt in yts)))


def yaw_markdown(yts: Sequence[YawBinTable]) -> str:
    parts = []
    for yt in yts:
        header = ["#", "method"] + [f"|yaw| {b}\u00b0 (scored/n)" for b in yt.bins] + ["all"]
        lines = [f"### {yt.title}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i == 1 else "---:" for i in range(len(header))) + "|"]
        for row in yt.rows:
            cells = [str(row.rank), row.run.method] + [cell_text(c) for c in yt.cells[row.run.id]]
            cells.append(format_value(None if row.score is None else row.score.score))
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines += [""] + yt.notes() + [""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


YAW_CSV_COLUMNS = ("dataset", "split", "protocol", "rank", "method", "run_id", "score_metric", "yaw_bin",
                   "score", "mean", "n_scored", "n_failed", "n_total")


def yaw_csv_rows(yts: Sequence[YawBinTable]) -> list[dict[str, Any]]:
    rows = []
    for yt in yts:
        t = yt.table
        for row in yt.rows:
            for b, c in zip(yt.bins, yt.cells[row.run.id]):
                rows.append({"dataset": t.dataset, "split": t.split, "protocol": t.protocol, "rank": row.rank,
                             "method": row.run.method, "run_id": row.run.id, "score_metric": yt.metric,
                             "yaw_bin": b, "score": "" if c.score is None else repr(c.score),
                             "mean": "" if c.mean is None else repr(c.mean), "n_scored": c.n_scored,
                             "n_failed": c.n_failed, "n_total": c.n_total})
    return rows


def yaw_as_dicts(yts: Sequence[YawBinTable]) -> list[dict[str, Any]]:
    return [{"dataset": yt.table.dataset, "split": yt.table.split, "protocol": yt.table.protocol,
             "score_metric": yt.metric, "bins_deg": list(yt.bins), "n_per_bin": list(yt.n_per_bin),
             "n_unknown_yaw": yt.n_unknown, "notes": yt.notes(),
             "rows": [{"rank": row.rank, "run_id": row.run.id, "method": row.run.method,
                       "bins": {b: {"score": c.score, "mean": c.mean, "n_scored": c.n_scored,
                                    "n_failed": c.n_failed, "n_total": c.n_total}
                                for b, c in zip(yt.bins, yt.cells[row.run.id])}}
                      for row in yt.rows]}
            for yt in yts]


def yaw_html(yt: YawBinTable, escape: Any) -> str:
    best = [yt.best(k) for k in range(len(yt.bins))]
    head = "".join(f"<th>|yaw| {escape(b)}&deg; (scored/n)</th>" for b in yt.bins)
    body = []
    for row in yt.rows:
        tds = []
        for k, c in enumerate(yt.cells[row.run.id]):
            cls = ' class="best"' if c.score is not None and c.score == best[k] else ""
            tds.append(f"<td{cls}>{escape(cell_text(c))}</td>")
        all_score = format_value(None if row.score is None else row.score.score)
        body.append(f"<tr><td>{row.rank}</td><td>{escape(row.run.method)}</td>{''.join(tds)}"
                    f"<td>{escape(all_score)}</td></tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in yt.notes())
    return (f'<h3>Per |yaw| bin</h3><table class="yaw-bins"><thead><tr><th>#</th><th>method</th>{head}'
            f"<th>all</th></tr></thead><tbody>{''.join(body)}</tbody></table>{notes}")


__all__ = ["BIN_LABELS", "YAW_CSV_COLUMNS", "YawBinCell", "YawBinTable", "render_yaw_tables", "yaw_as_dicts",
           "yaw_bin_table", "yaw_bin_tables", "yaw_csv_rows", "yaw_html", "yaw_markdown"]
