"""Text exports of leaderboard tables: Markdown, CSV (tidy: one row per run and metric) and
JSON. The HTML report is in :mod:`.report`.

Every export carries the ranking score and coverage of each run (see :mod:`.table`), each
metric's unit and direction, and where the direction came from (declared by the protocol,
an override, or guessed from the name for runs recorded without a declaration)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Sequence
from typing import Any

from .compare import GroupComparison
from .stats import PENALTY_RULE
from .records import input_label
from .table import LeaderboardTable, format_coverage, format_metric, format_score, short_hash

CSV_COLUMNS = (
    "dataset", "split", "protocol", "rank", "method", "inputs", "method_version", "run_id", "seed",
    "config_hash", "git_commit", "metric", "direction", "primary", "value", "std", "n",
    "n_failed", "unit", "direction_source", "score_metric", "score", "n_scored", "n_total",
    "coverage",
)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(tables: Sequence[LeaderboardTable]) -> str:
    """One ``###`` section with a pipe table per (dataset, split, protocol), followed by how
    it was ranked."""
    if not tables:
        return "_No finished runs match the filters._\n"
    parts: list[str] = []
    for t in tables:
        header = ["#", "method", "inputs", "version", "run", "seed", "config"]
        if t.ranked_on_score:
            header += [t.score_label, "coverage"]
        header += [t.label(m) for m in t.metrics]
        header += ["n", "failed"]
        lines = [f"### {t.title}", "", "| " + " | ".join(map(_md_cell, header)) + " |"]
        lines.append("|" + "|".join("---:" if i in (0, 4, 5) or i >= 7 else "---"
                                    for i in range(len(header))) + "|")
        for row in t.rows:
            run = row.run
            pm = run.metrics.get(t.primary_metric)
            cells = [str(row.rank), run.method, input_label(run.config), run.method_version, str(run.id), str(run.seed),
                     short_hash(run.config_hash)]
            if t.ranked_on_score:
                cells += [format_score(row.score), format_coverage(row.score)]
            cells += [format_metric(run.metrics.get(m)) for m in t.metrics]
            cells += ["" if pm is None or pm.n is None else str(pm.n),
                      "" if pm is None else str(pm.n_failed)]
            lines.append("| " + " | ".join(map(_md_cell, cells)) + " |")
        lines += [""] + t.notes() + [
            "(\u2193 lower is better, \u2191 higher is better, * ranking column.)", ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def csv_rows(tables: Sequence[LeaderboardTable]) -> list[dict[str, Any]]:
    """Tidy rows: one per (ranked run, metric), columns :data:`CSV_COLUMNS`."""
    rows = []
    for t in tables:
        for row in t.rows:
            run = row.run
            for name in t.metrics:
                m = run.metrics.get(name)
                if m is None:
                    continue
                rows.append({
                    "dataset": t.dataset, "split": t.split, "protocol": t.protocol,
                    "rank": row.rank, "method": run.method, "inputs": input_label(run.config),
                    "method_version": run.method_version,
                    "run_id": run.id, "seed": run.seed, "config_hash": run.config_hash,
                    "git_commit": run.git_commit or "", "metric": name,
                    "direction": t.directions[name], "primary": int(name == t.primary_metric),
                    "value": "" if m.value is None else repr(m.value),
                    "std": "" if m.std is None else repr(m.std),
                    "n": "" if m.n is None else m.n, "n_failed": m.n_failed,
                    "unit": t.units.get(name, ""),
                    "direction_source": t.direction_sources.get(name, ""),
                    **_score_fields(t, row.score),
                })
    return rows


def _score_fields(t: LeaderboardTable, score: Any) -> dict[str, Any]:
    if score is None:
        return {"score_metric": t.score_metric or "", "score": "", "n_scored": "", "n_total": "",
                "coverage": ""}
    return {"score_metric": t.score_metric or "",
            "score": "" if score.score is None else repr(score.score),
            "n_scored": score.n_scored, "n_total": score.n_total, "coverage": repr(score.coverage)}


def to_csv(tables: Sequence[LeaderboardTable]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(tables))
    return buf.getvalue()


def _iso(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def tables_as_dicts(tables: Sequence[LeaderboardTable]) -> list[dict[str, Any]]:
    """JSON-ready dicts of the tables (run provenance and every metric)."""
    out = []
    for t in tables:
        out.append({
            "dataset": t.dataset, "split": t.split, "protocol": t.protocol,
            "primary_metric": t.primary_metric,
            "ranking": {
                "score_metric": t.score_metric, "n_total": t.n_total,
                "rule": (f"mean per-sample {t.score_metric} over all {t.n_total} samples; "
                         f"{PENALTY_RULE}") if t.ranked_on_score
                else f"plain mean of {t.primary_metric} (no per-sample values)",
                "notes": t.notes(),
            },
            "metrics": [{"name": m, "direction": t.directions[m], "unit": t.units.get(m, ""),
                         "direction_source": t.direction_sources.get(m, "")} for m in t.metrics],
            "rows": [
                {
                    "rank": row.rank, "run_id": row.run.id, "method": row.run.method,
                    "inputs": input_label(row.run.config),
                    "score": None if row.score is None else row.score.score,
                    "coverage": None if row.score is None else {
                        "n_scored": row.score.n_scored, "n_total": row.score.n_total,
                        "fraction": row.score.coverage},
                    "method_version": row.run.method_version, "seed": row.run.seed,
                    "config_hash": row.run.config_hash, "config": row.run.config,
                    "checkpoint": row.run.checkpoint, "git_commit": row.run.git_commit,
                    "hardware": row.run.hardware, "started_at": _iso(row.run.started_at),
                    "ended_at": _iso(row.run.ended_at),
                    "metrics": {
                        name: {"value": m.value, "std": m.std, "n": m.n, "n_failed": m.n_failed,
                               "unit": m.unit, "direction": m.direction,
                               "sample_metric": m.sample_metric}
                        for name, m in row.run.metrics.items()
                    },
                }
                for row in t.rows
            ],
        })
    return out


def to_json(
    tables: Sequence[LeaderboardTable],
    comparisons: Sequence[GroupComparison] | None = None,
    *,
    meta: dict[str, Any] | None = None,
    yaw_tables: Sequence[Any] | None = None,
) -> str:
    """``{"generated_at", "meta", "tables": [...], "yaw_bins": [...], "comparisons": [...]}`` as
    indented JSON (missing values are null); ``yaw_bins`` (the per-yaw-bin boards of
    :mod:`.yawbins`) only when ``yaw_tables`` is given."""
    doc: dict[str, Any] = {
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "meta": meta or {},
        "tables": tables_as_dicts(tables),
    }
    if yaw_tables is not None:
        from .yawbins import yaw_as_dicts

        doc["yaw_bins"] = yaw_as_dicts(yaw_tables)
    if comparisons is not None:
        doc["comparisons"] = [c.as_dict() for c in comparisons]
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False)
