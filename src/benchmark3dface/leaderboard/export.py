"""Text exports of leaderboard tables: Markdown, CSV (tidy: one row per run and metric) and
JSON. The HTML report is in :mod:`.report`."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Sequence
from typing import Any

from .compare import GroupComparison
from .directions import direction_arrow
from .table import LeaderboardTable, format_metric, short_hash

CSV_COLUMNS = (
    "dataset", "split", "protocol", "rank", "method", "method_version", "run_id", "seed",
    "config_hash", "git_commit", "metric", "direction", "primary", "value", "std", "n",
    "n_failed",
)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(tables: Sequence[LeaderboardTable]) -> str:
    """One ``###`` section with a pipe table per (dataset, split, protocol)."""
    if not tables:
        return "_No finished runs match the filters._\n"
    parts: list[str] = []
    for t in tables:
        header = ["#", "method", "version", "run", "seed", "config"]
        header += [
            f"{m} {direction_arrow(t.directions[m])}" + (" *" if m == t.primary_metric else "")
            for m in t.metrics
        ]
        header += ["n", "failed"]
        lines = [f"### {t.title}", "", "| " + " | ".join(map(_md_cell, header)) + " |"]
        lines.append("|" + "|".join("---:" if i in (0, 3, 4) or i >= 6 else "---"
                                    for i in range(len(header))) + "|")
        for row in t.rows:
            run = row.run
            pm = run.metrics.get(t.primary_metric)
            cells = [str(row.rank), run.method, run.method_version, str(run.id), str(run.seed),
                     short_hash(run.config_hash)]
            cells += [format_metric(run.metrics.get(m)) for m in t.metrics]
            cells += ["" if pm is None or pm.n is None else str(pm.n),
                      "" if pm is None else str(pm.n_failed)]
            lines.append("| " + " | ".join(map(_md_cell, cells)) + " |")
        lines += ["", f"Ranked on `{t.primary_metric}` "
                  "(\u2193 lower is better, \u2191 higher is better).", ""]
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
                    "rank": row.rank, "method": run.method, "method_version": run.method_version,
                    "run_id": run.id, "seed": run.seed, "config_hash": run.config_hash,
                    "git_commit": run.git_commit or "", "metric": name,
                    "direction": t.directions[name], "primary": int(name == t.primary_metric),
                    "value": "" if m.value is None else repr(m.value),
                    "std": "" if m.std is None else repr(m.std),
                    "n": "" if m.n is None else m.n, "n_failed": m.n_failed,
                })
    return rows


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
            "metrics": [{"name": m, "direction": t.directions[m]} for m in t.metrics],
            "rows": [
                {
                    "rank": row.rank, "run_id": row.run.id, "method": row.run.method,
                    "method_version": row.run.method_version, "seed": row.run.seed,
                    "config_hash": row.run.config_hash, "config": row.run.config,
                    "checkpoint": row.run.checkpoint, "git_commit": row.run.git_commit,
                    "hardware": row.run.hardware, "started_at": _iso(row.run.started_at),
                    "ended_at": _iso(row.run.ended_at),
                    "metrics": {
                        name: {"value": m.value, "std": m.std, "n": m.n, "n_failed": m.n_failed}
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
) -> str:
    """``{"generated_at", "meta", "tables": [...], "comparisons": [...]}`` as indented JSON
    (missing values are null)."""
    doc: dict[str, Any] = {
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "meta": meta or {},
        "tables": tables_as_dicts(tables),
    }
    if comparisons is not None:
        doc["comparisons"] = [c.as_dict() for c in comparisons]
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False)
