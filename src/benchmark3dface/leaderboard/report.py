"""Self-contained HTML report of a leaderboard.

One HTML file, no external URL of any kind (no CDN, no font, no script): inline CSS and
inline SVG plots made with matplotlib (:mod:`.plots`). Per (dataset, split, protocol):

* the ranked table (best value of each metric in bold) with each run's ranking score and
  coverage, and how the table was ranked (the penalty rule, or the plain-mean fallback),
* per-yaw-bin bars for metrics named ``<base>_<lo>_<hi>`` (``nme_0_30``, ``nme_30_60``, ...),
* CED curves from the per-sample values (failed samples never count as within a threshold),
* error distributions per method (box plots and histograms),
* paired Wilcoxon signed-rank tests between every two ranked runs on their shared samples,
  with the samples each side failed.

With ``gallery=`` (the runs' ``gallery.pt`` files), a gallery section follows the tables:
fixed test samples with each method's landmarks, rendered reconstruction and per-vertex error
heatmap (:mod:`.gallery`; pictures as inline base64 PNG, so the file stays self-contained).
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compare import compare_runs
from .directions import Direction, direction_arrow
from .plots import Series, ced_svg, distribution_svg, yaw_bins_svg
from .records import SampleValues, input_label
from .stats import PairedComparison
from .store import ResultsStore
from .table import (
    LeaderboardTable,
    format_coverage,
    format_metric,
    format_score,
    format_value,
    short_hash,
    yaw_bin_groups,
)

if TYPE_CHECKING:
    from .gallery import GallerySet

CSS = """
:root { --fg:#1d2430; --muted:#5b6472; --line:#d9dee7; --accent:#1f5fbf; --best:#0b7a3b; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 24px 32px 48px; max-width: 1200px; background: #fff;
       font-size: 14px; line-height: 1.45; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 15px; margin: 22px 0 8px; color: var(--accent); }
.meta, .note, figcaption { color: var(--muted); font-size: 12.5px; }
nav ul { padding-left: 18px; margin: 8px 0; }
nav a { color: var(--accent); text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: right; white-space: nowrap; }
th { background: #f3f5f9; font-weight: 600; }
td.text, th.text { text-align: left; }
tbody tr:hover { background: #f8fafc; }
td.best { color: var(--best); font-weight: 700; }
td.sig { font-weight: 700; }
code { background: #f3f5f9; padding: 0 3px; border-radius: 3px; }
figure { margin: 8px 0 18px; }
svg.plot { max-width: 100%; height: auto; display: block; }
.plots { display: flex; flex-wrap: wrap; gap: 8px 24px; }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table_html(t: LeaderboardTable) -> str:
    head = ['<th>#</th>', '<th class="text">method</th>', '<th class="text">inputs</th>', '<th class="text">version</th>',
            '<th>run</th>', '<th>seed</th>', '<th class="text">config</th>']
    primary_dir = t.directions[t.primary_metric]
    if t.ranked_on_score:
        head.append(f'<th class="score" title="{_e(primary_dir)} is better">{_e(t.score_label)}</th>')
        head.append('<th class="coverage" title="samples scored / samples in the table">coverage</th>')
    for m in t.metrics:
        source = t.direction_sources.get(m, "declared")
        head.append(f'<th title="{_e(t.directions[m])} is better ({_e(source)})">{_e(t.label(m))}</th>')
    head += ["<th>n</th>", "<th>failed</th>"]
    best = {m: t.best_value(m) for m in t.metrics}
    best_score = t.best_score()
    body = []
    for row in t.rows:
        run = row.run
        pm = run.metrics.get(t.primary_metric)
        cells = [
            f"<td>{row.rank}</td>", f'<td class="text">{_e(run.method)}</td>',
            f'<td class="text">{_e(input_label(run.config))}</td>',
            f'<td class="text">{_e(run.method_version)}</td>', f"<td>{run.id}</td>",
            f"<td>{run.seed}</td>",
            f'<td class="text"><code title="{_e(run.config_hash)}">'
            f"{_e(short_hash(run.config_hash))}</code></td>",
        ]
        if t.ranked_on_score:
            sc = row.score
            is_best = sc is not None and sc.score is not None and sc.score == best_score
            cells.append(f'<td class="{"score best" if is_best else "score"}">{_e(format_score(sc))}</td>')
            cells.append(f'<td class="coverage">{_e(format_coverage(sc))}</td>')
        for m in t.metrics:
            mv = run.metrics.get(m)
            is_best = mv is not None and mv.value is not None and mv.value == best[m]
            cls = ' class="best"' if is_best else ""
            cells.append(f"<td{cls}>{_e(format_metric(mv))}</td>")
        cells.append(f"<td>{'' if pm is None or pm.n is None else pm.n}</td>")
        cells.append(f"<td>{'' if pm is None else pm.n_failed}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<table class="leaderboard"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
        + "".join(body) + "</tbody></table>"
    )


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "\u2014"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _paired_html(results: Sequence[PairedComparison]) -> str:
    if not results:
        return '<p class="empty">No two ranked runs share per-sample values.</p>'
    head = ("<tr><th class=\"text\">metric</th><th class=\"text\">A</th><th class=\"text\">B</th>"
            "<th>n shared</th><th>failed A</th><th>failed B</th><th>mean A</th><th>mean B</th>"
            "<th>mean A\u2212B</th>"
            "<th>median A\u2212B</th><th>W</th><th>p</th><th class=\"text\">better</th></tr>")
    rows = []
    for r in results:
        better = "tie" if r.better is None and r.n_shared else (r.better or "\u2014")
        verdict = f"{_e(better)} " + (f"(p &lt; {r.alpha:g})" if r.significant else "(n.s.)")
        sig = ' class="sig"' if r.significant else ""
        sig_text = "text sig" if r.significant else "text"
        rows.append(
            "<tr>" + "".join([
                f'<td class="text">{_e(r.metric)} {direction_arrow(r.direction)}'
                f'{"?" if r.direction_source == "guessed" else ""}</td>',
                f'<td class="text">{_e(r.label_a)}</td>', f'<td class="text">{_e(r.label_b)}</td>',
                f"<td>{r.n_shared}</td>", f"<td>{r.n_failed_a}</td>", f"<td>{r.n_failed_b}</td>",
                f"<td>{format_value(r.mean_a)}</td>",
                f"<td>{format_value(r.mean_b)}</td>", f"<td>{format_value(r.mean_diff)}</td>",
                f"<td>{format_value(r.median_diff)}</td>", f"<td>{format_value(r.statistic)}</td>",
                f"<td{sig}>{_fmt_p(r.p_value)}</td>",
                f'<td class="{sig_text}">{verdict}</td>',
            ]) + "</tr>"
        )
    return '<table class="paired"><thead>' + head + "</thead><tbody>" + "".join(rows) + "</tbody></table>"


def _figure(svg: str, kind: str, caption: str) -> str:
    return f'<figure class="{kind}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _group_html(
    store: ResultsStore,
    t: LeaderboardTable,
    gid: str,
    *,
    alpha: float,
    directions: Mapping[str, Direction] | None,
) -> str:
    parts = [f'<section class="group" id="{gid}"><h2>{_e(t.title)}</h2>', _table_html(t)]
    parts += [f'<p class="note ranking">{_e(note)}</p>' for note in t.notes()]
    parts.append('<p class="note">Best run per method unless all runs were asked for. Best value '
                 "per column in bold.</p>")
    from .yawbins import yaw_bin_table, yaw_html

    yt = yaw_bin_table(store, t)
    if yt is not None:
        parts.append(yaw_html(yt, _e))

    bins = yaw_bin_groups(t.metrics)
    if bins:
        parts.append("<h3>Per-yaw-bin</h3><div class=\"plots\">")
        rows = [(r.run.method, r.run.metrics) for r in t.rows]
        for k, (base, b) in enumerate(sorted(bins.items())):
            parts.append(_figure(yaw_bins_svg(base, b, rows, f"{gid}-yaw{k}"), "yaw-bins",
                                 f"{base} per |yaw| bin (degrees); error bars: std when reported."))
        parts.append("</div>")

    per_run_metrics = {r.run.id: store.per_sample_metrics(r.run.id) for r in t.rows}
    sample_metrics = [m for m in t.metrics if any(m in v for v in per_run_metrics.values())]
    extra = sorted({m for v in per_run_metrics.values() for m in v} - set(sample_metrics))
    sample_metrics += extra
    cache: dict[tuple[int, str], SampleValues] = {}

    def values(run_id: int, metric: str) -> SampleValues:
        if (run_id, metric) not in cache:
            cache[(run_id, metric)] = store.sample_values(run_id, metric)
        return cache[(run_id, metric)]

    if sample_metrics:
        ced_parts, dist_parts = [], []
        for k, metric in enumerate(sample_metrics):
            series = [
                Series(label=r.run.method, values=sv.values, n_failed=len(sv.failures))
                for r in t.rows
                if metric in per_run_metrics[r.run.id] and (sv := values(r.run.id, metric)).n_total
            ]
            if not series:
                continue
            ced_parts.append(_figure(
                ced_svg(metric, series, f"{gid}-ced{k}"), "ced",
                f"CED of {metric}: fraction of all samples with error \u2264 x "
                "(failed samples never count)."))
            dist_parts.append(_figure(
                distribution_svg(metric, series, f"{gid}-dist{k}"), "distribution",
                f"Per-sample {metric} per method."))
        parts.append("<h3>CED curves</h3><div class=\"plots\">" + "".join(ced_parts) + "</div>")
        parts.append("<h3>Error distributions</h3><div class=\"plots\">" + "".join(dist_parts) + "</div>")
        results: list[PairedComparison] = []
        for metric in sample_metrics:
            for ra, rb in combinations(t.rows, 2):
                if metric in per_run_metrics[ra.run.id] and metric in per_run_metrics[rb.run.id]:
                    results.extend(compare_runs(
                        store, ra.run, rb.run, metrics=[metric], label_a=ra.run.method,
                        label_b=rb.run.method, alpha=alpha, directions=directions))
        parts.append("<h3>Paired comparisons (Wilcoxon signed-rank)</h3>")
        parts.append(f'<p class="note">Two-sided test of A\u2212B on the samples both runs '
                     f"scored; significant when p &lt; {alpha:g}. Failed A / B: samples each run "
                     "failed (left out of the test, counted at a penalty in the score).</p>")
        parts.append(_paired_html(results))
    else:
        parts.append('<p class="empty">No per-sample values stored: no CED curves, '
                     "distributions or paired tests.</p>")
    parts.append("</section>")
    return "".join(parts)


def build_report(
    store: ResultsStore,
    tables: Sequence[LeaderboardTable],
    *,
    title: str = "benchmark3dface leaderboard",
    filters: Mapping[str, str | None] | None = None,
    alpha: float = 0.05,
    directions: Mapping[str, Direction] | None = None,
    extra_html: str = "",
    gallery: "GallerySet | Sequence[Path | str | Mapping[str, Any]] | None" = None,
) -> str:
    """The HTML text of the report for ``tables`` (per-sample values read from ``store``);
    ``extra_html``: sections appended after the tables (e.g. the metric-fidelity table);
    ``gallery``: gallery files / records (or a loaded :class:`~.gallery.GallerySet`, whose
    ``problems`` then also receive the drawing problems) shown after the tables."""
    gallery_section = ""
    if gallery is not None:
        from .gallery import GALLERY_CSS, GallerySet, gallery_html

        if isinstance(gallery, GallerySet) or list(gallery):
            gallery_section = gallery_html(gallery)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    active = ", ".join(f"{k}={v}" for k, v in (filters or {}).items() if v) or "none"
    n_runs = sum(len(t.rows) for t in tables)
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}{GALLERY_CSS if gallery_section else ''}</style></head><body>",
        f"<header><h1>{_e(title)}</h1><p class=\"meta\">Generated {now} from "
        f"<code>{_e(store.display_url)}</code> (schema v{store.schema_version}); "
        f"{len(tables)} table(s), {n_runs} ranked run(s); filters: {_e(active)}.</p></header>",
    ]
    if not tables:
        out.append('<p class="empty">No finished runs match the filters.</p>')
    else:
        out.append("<nav><ul>" + "".join(
            f'<li><a href="#g{i}">{_e(t.title)}</a></li>' for i, t in enumerate(tables, 1)
        ) + ('<li><a href="#gallery">Gallery</a></li>' if gallery_section else "") + "</ul></nav>")
        for i, t in enumerate(tables, 1):
            out.append(_group_html(store, t, f"g{i}", alpha=alpha, directions=directions))
    if gallery_section:
        out.append(gallery_section)
    if extra_html:
        out.append(extra_html)
    out.append("<footer>\u2193 lower is better, \u2191 higher is better (? guessed from the "
               "metric name), * ranking column. n and failed are of the ranking metric. Values "
               "are mean \u00b1 std as the protocol reported them.</footer></body></html>")
    return "\n".join(out)
