"""Matplotlib figures for the HTML report, rendered to inline SVG text.

No pyplot (no global state, no GUI backend): each function builds a
:class:`matplotlib.figure.Figure` and returns ``<svg>...</svg>`` with the XML prolog, DOCTYPE
and namespace URLs removed and every ``id`` prefixed, so several plots can sit in one HTML
page without id clashes or any external reference. Text stays text (``svg.fonttype: none``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .records import MetricValue
from .stats import ced_auc, ced_curve

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "benchmark3dface",
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
# ``vert=`` is deprecated from matplotlib 3.10 in favour of ``orientation=``.
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10)
    else {"vert": False}
)
_COLORS = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]


def color(i: int) -> str:
    """The i-th series colour (cycled)."""
    return _COLORS[i % len(_COLORS)]


def _new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), layout="constrained")


def figure_to_svg(fig: Figure, prefix: str) -> str:
    """Inline SVG text of ``fig`` (no prolog/DOCTYPE/xmlns); ids prefixed with ``prefix-``."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", prefix):
        raise ValueError(f"SVG id prefix must be an identifier, got {prefix!r}")
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata=_METADATA)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if ids:
        alternatives = "|".join(map(re.escape, sorted(ids, key=len, reverse=True)))
        pattern = re.compile(r'(\bid="|href="#|url\(#)(' + alternatives + r')(?=[")])')
        svg = pattern.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    return svg.replace("<svg ", f'<svg class="plot" id="{prefix}" role="img" ', 1)


@dataclass(frozen=True)
class Series:
    """Per-sample values of one run for one metric (``values`` finite, ``n_failed`` failures)."""

    label: str
    values: np.ndarray
    n_failed: int


def ced_x_max(series: Sequence[Series], quantile: float = 0.99) -> float:
    """An x range for CED curves: the ``quantile`` of all values pooled (at least a bit > 0)."""
    pooled = np.concatenate([s.values for s in series if s.values.size] or [np.zeros(1)])
    x_max = float(np.quantile(pooled, quantile)) if pooled.size else 1.0
    return x_max if x_max > 0 else float(pooled.max() or 1.0)


def ced_svg(metric: str, series: Sequence[Series], prefix: str, *, units: str = "") -> str:
    """CED curves (fraction of samples with error <= x; failures never count) of one metric,
    one line per run; the legend shows the normalised AUC on the plotted range."""
    with matplotlib.rc_context(_RC):
        fig = _new_figure(6.4, 3.6)
        ax = fig.add_subplot()
        x_max = ced_x_max(series)
        thresholds = np.linspace(0.0, x_max, 256)
        for i, s in enumerate(series):
            if s.values.size + s.n_failed == 0:
                continue
            y = ced_curve(s.values, s.n_failed, thresholds)
            auc = ced_auc(np.clip(s.values, 0, None), s.n_failed, x_max)
            failed = f", {s.n_failed} failed" if s.n_failed else ""
            ax.plot(thresholds, y, color=color(i), lw=1.6,
                    label=f"{s.label} (AUC {auc:.3f}, n={s.values.size}{failed})")
        ax.set_xlim(0, x_max)
        ax.set_ylim(0, 1.0)
        ax.set_xlabel(f"{metric}{f' ({units})' if units else ''}")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"CED: {metric}")
        ax.legend(loc="lower right", fontsize=8)
        return figure_to_svg(fig, prefix)


def yaw_bins_svg(
    base: str,
    bins: Sequence[tuple[str, int, int]],
    rows: Sequence[tuple[str, dict[str, MetricValue]]],
    prefix: str,
) -> str:
    """Grouped bars of ``<base>_<lo>_<hi>`` metrics per |yaw| bin (degrees), one bar per run
    (label, metrics); error bars show the std where the protocol reported one."""
    with matplotlib.rc_context(_RC):
        fig = _new_figure(6.4, 3.4)
        ax = fig.add_subplot()
        x = np.arange(len(bins), dtype=float)
        width = 0.8 / max(1, len(rows))
        for i, (label, metrics) in enumerate(rows):
            vals = [metrics.get(name) for name, _, _ in bins]
            heights = np.array([np.nan if v is None or v.value is None else v.value for v in vals])
            err = np.array([np.nan if v is None or v.std is None else v.std for v in vals])
            offs = x - 0.4 + width * (i + 0.5)
            ax.bar(offs, np.nan_to_num(heights), width=width * 0.95, color=color(i), label=label,
                   yerr=None if np.isnan(err).all() else np.nan_to_num(err), capsize=2,
                   error_kw={"elinewidth": 0.8})
            for xo, h in zip(offs, heights, strict=True):
                if np.isfinite(h):
                    ax.annotate(f"{h:.3g}", (xo, h), ha="center", va="bottom", fontsize=7,
                                xytext=(0, 1), textcoords="offset points")
        ax.set_xticks(x, [f"{lo}\u2013{hi}\u00b0" for _, lo, hi in bins])
        ax.set_xlabel("|yaw| bin")
        ax.set_ylabel(base)
        ax.set_title(f"{base} per yaw bin")
        ax.grid(axis="x", visible=False)
        ax.legend(fontsize=8)
        return figure_to_svg(fig, prefix)


def distribution_svg(metric: str, series: Sequence[Series], prefix: str) -> str:
    """Error distribution per run: box plots (left) and overlaid step histograms (right,
    normalised to densities, range up to the pooled 99.5th percentile)."""
    with matplotlib.rc_context(_RC):
        fig = _new_figure(6.4, 3.2)
        ax_box, ax_hist = fig.subplots(1, 2, width_ratios=[1, 1.3])
        present = [(i, s) for i, s in enumerate(series) if s.values.size]
        if present:
            bp = ax_box.boxplot([s.values for _, s in present], patch_artist=True, showfliers=True,
                                flierprops={"markersize": 2, "alpha": 0.4}, **_HORIZONTAL)
            for patch, (i, _) in zip(bp["boxes"], present, strict=True):
                patch.set_facecolor(color(i))
                patch.set_alpha(0.5)
            ax_box.set_yticks(range(1, len(present) + 1), [s.label for _, s in present])
            ax_box.invert_yaxis()  # first (best-ranked) run on top
            pooled = np.concatenate([s.values for _, s in present])
            hi = float(np.quantile(pooled, 0.995))
            lo = float(pooled.min())
            n_bins = int(np.clip(2 * np.sqrt(max(s.values.size for _, s in present)), 10, 40))
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, n_bins + 1)
            for i, s in present:
                ax_hist.hist(s.values, bins=edges, histtype="step",
                             lw=1.4, color=color(i), label=s.label, density=True)
            ax_hist.legend(fontsize=8)
        ax_box.set_xlabel(metric)
        ax_hist.set_xlabel(metric)
        ax_hist.set_ylabel("density")
        fig.suptitle(f"distribution: {metric}", fontsize=10)
        return figure_to_svg(fig, prefix)
