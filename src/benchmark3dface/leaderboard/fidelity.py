"""The "metric fidelity" table from stored runs.

On synthetic datasets every method also has a ``true_error`` run (per-vertex error in known
correspondence). For every other protocol run of the same method, configuration and dataset,
the correlation across samples between the protocol's per-sample estimate and the true error
says how far the protocol can be trusted as an error estimator (M3DFB found ICP-only
estimators as low as 0.41). Rows per (dataset, protocol, method) and a pooled row per
(dataset, protocol) over every method whose true error is not a floor (the oracle's ~0 mm
would make any protocol look perfect).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics.fidelity import metric_fidelity
from .records import StoredRun

#: per-sample quantity of each protocol that estimates the error
ESTIMATE_KEYS = {"micc": "rmse", "now": "mean", "now_metrical": "mean", "aflw2000_nme": "nme",
                 "aflw2000_dense_nme": "nme", "depth": "mean"}
TRUTH_PROTOCOL, TRUTH_KEY = "true_error", "mean"
#: a method whose mean true error is below this (mm) is a floor (oracle) and left out of pooling
FLOOR_MM = 1e-3


@dataclass
class FidelityRow:
    dataset: str
    protocol: str
    method: str  # "(pooled)" for the pooled row
    pearson: float
    spearman: float
    n: int


def fidelity_rows(store, runs: Sequence[StoredRun]) -> list[FidelityRow]:
    """Fidelity rows for the finished ``runs`` (see the module docstring)."""
    finished = [r for r in runs if r.status == "finished"]
    truth = {(r.dataset, r.split, r.method, r.config_hash): r for r in finished if r.protocol == TRUTH_PROTOCOL}
    pooled: dict[tuple[str, str], tuple[dict[str, float], dict[str, float]]] = {}
    rows: list[FidelityRow] = []
    for run in sorted(finished, key=lambda r: (r.dataset, r.protocol, r.method)):
        key = ESTIMATE_KEYS.get(run.protocol)
        t = truth.get((run.dataset, run.split, run.method, run.config_hash))
        if key is None or t is None:
            continue
        sv = store.sample_values(run.id, key)
        est = dict(zip(sv.ids.tolist(), sv.values.tolist()))
        sv = store.sample_values(t.id, TRUTH_KEY)
        tru = dict(zip(sv.ids.tolist(), sv.values.tolist()))
        f = metric_fidelity(est, tru)
        rows.append(FidelityRow(run.dataset, run.protocol, run.method, f.pearson, f.spearman, f.n))
        if tru and float(np.mean(list(tru.values()))) > FLOOR_MM:
            pe, pt = pooled.setdefault((run.dataset, run.protocol), ({}, {}))
            pe.update({f"{run.method}/{k}": v for k, v in est.items()})
            pt.update({f"{run.method}/{k}": v for k, v in tru.items()})
    for (dataset, protocol), (pe, pt) in sorted(pooled.items()):
        f = metric_fidelity(pe, pt)
        rows.append(FidelityRow(dataset, protocol, "(pooled)", f.pearson, f.spearman, f.n))
    return rows


def _fmt(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f}"


def rich_fidelity(rows: Sequence[FidelityRow]):
    """A rich Table of the fidelity rows."""
    from rich.table import Table

    out = Table(title="metric fidelity: correlation of each protocol's per-sample value with the true error",
                title_justify="left", header_style="bold")
    for col, just in (("dataset", "left"), ("protocol", "left"), ("method", "left"), ("pearson", "right"),
                      ("spearman", "right"), ("n", "right")):
        out.add_column(col, justify=just)
    for r in rows:
        out.add_row(r.dataset, r.protocol, r.method, _fmt(r.pearson), _fmt(r.spearman), str(r.n))
    return out


def fidelity_html(rows: Sequence[FidelityRow]) -> str:
    """An HTML section with the fidelity table (empty string without rows)."""
    if not rows:
        return ""
    e = html.escape
    body = "".join(f"<tr><td>{e(r.dataset)}</td><td>{e(r.protocol)}</td><td>{e(r.method)}</td>"
                   f"<td>{_fmt(r.pearson)}</td><td>{_fmt(r.spearman)}</td><td>{r.n}</td></tr>" for r in rows)
    return ('<section id="fidelity"><h2>Metric fidelity</h2><p>Correlation across samples between each '
            "protocol's per-sample estimate and the true error (synthetic data, known correspondence). "
            "Pooled rows leave out floor methods (true error &lt; 1e-3 mm).</p><table><thead><tr><th>dataset</th>"
            "<th>protocol</th><th>method</th><th>pearson</th><th>spearman</th><th>n</th></tr></thead>"
            f"<tbody>{body}</tbody></table></section>")
