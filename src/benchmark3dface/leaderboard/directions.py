"""Which way is better for a metric.

Protocols declare the direction of every number they report (``ProtocolMetric.directions``
/ ``higher_is_better``); the store keeps it with each metric and the leaderboard uses it
(:func:`resolve_direction`). The name-token table below is only the *fallback* for runs
recorded without a declaration (stores written before schema version 3, or results given
as plain numbers); tables, exports and the report say when it was used.

The fallback table: errors (NME, RMSE, MAE, point-to-plane / scan-to-mesh distances in millimetres, Chamfer,
percentiles of errors, failure rates) are *lower is better*; scores (AUC of a CED curve,
accuracy, IoU, precision/recall/F1, PSNR, SSIM, correlations) are *higher is better*.

A metric name is split into lower-case tokens on anything that is not a letter or a digit
(``"nme_30_60"`` -> ``["nme", "30", "60"]``, ``"AUC@0.07"`` -> ``["auc", "0", "07"]``); any
token found in :data:`HIGHER_IS_BETTER_TOKENS` makes the metric higher-is-better,
otherwise it is lower-is-better (the field mostly reports errors), so ``"auc_nme"`` is a
score and ``"nme_0_30"`` an error. An explicit ``overrides``
mapping wins over the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

Direction = Literal["lower", "higher"]
#: Where a direction came from: an explicit override, the protocol's declaration stored with
#: the run, or a guess from the metric name (runs recorded without a declaration).
DirectionSource = Literal["override", "declared", "guessed"]

#: Tokens that mark a score (higher is better).
HIGHER_IS_BETTER_TOKENS: frozenset[str] = frozenset(
    {
        "auc", "acc", "accuracy", "iou", "miou", "precision", "recall", "f1", "fscore",
        "psnr", "ssim", "success", "tar", "corr", "correlation", "pearson", "spearman",
        "dice", "score",
    }
)

#: Tokens that mark an error (lower is better). Listed for documentation and for
#: :func:`is_known_metric`; anything not in the higher table is lower-is-better anyway.
LOWER_IS_BETTER_TOKENS: frozenset[str] = frozenset(
    {
        "nme", "rmse", "mse", "mae", "error", "err", "errors", "dist", "distance", "chamfer",
        "p2s", "s2m", "p2p", "median", "mean", "std", "p90", "p95", "fail", "failure",
        "failures", "loss", "time", "latency", "ms", "mm",
    }
)

_TOKEN_RE = re.compile(r"[^0-9a-zA-Z]+")


def metric_tokens(name: str) -> list[str]:
    """Lower-case alphanumeric tokens of a metric name (``"NME_0_30"`` -> ``["nme","0","30"]``)."""
    return [t for t in _TOKEN_RE.split(name.lower()) if t]


def metric_direction(name: str, overrides: Mapping[str, Direction] | None = None) -> Direction:
    """Return ``"lower"`` or ``"higher"``: which values of metric ``name`` are better.

    ``overrides`` maps exact metric names to a direction and wins over the token table.
    """
    if overrides and name in overrides:
        direction = overrides[name]
        if direction not in ("lower", "higher"):
            raise ValueError(
                f"direction override for metric {name!r} must be 'lower' or 'higher', "
                f"got {direction!r}"
            )
        return direction
    for token in metric_tokens(name):
        if token in HIGHER_IS_BETTER_TOKENS:
            return "higher"
    return "lower"


def is_known_metric(name: str) -> bool:
    """True when some token of ``name`` is in one of the two direction tables."""
    tokens = set(metric_tokens(name))
    return bool(tokens & (HIGHER_IS_BETTER_TOKENS | LOWER_IS_BETTER_TOKENS))


def direction_arrow(direction: Direction) -> str:
    """A one-character marker for table headers: down arrow = lower is better."""
    return "\u2193" if direction == "lower" else "\u2191"


def resolve_direction(
    name: str,
    declared: Iterable[str | None] = (),
    overrides: Mapping[str, Direction] | None = None,
) -> tuple[Direction, DirectionSource]:
    """The direction of metric ``name`` and where it came from: an entry of ``overrides``
    wins, then the first non-None ``declared`` direction (the protocol's declaration, as
    stored with the runs, most recent first), then the name-token guess of
    :func:`metric_direction`."""
    if overrides and name in overrides:
        return metric_direction(name, overrides), "override"
    for direction in declared:
        if direction is None:
            continue
        if direction not in ("lower", "higher"):
            raise ValueError(f"stored direction of metric {name!r} must be 'lower' or 'higher', got {direction!r}")
        return direction, "declared"  # type: ignore[return-value]
    return metric_direction(name), "guessed"
