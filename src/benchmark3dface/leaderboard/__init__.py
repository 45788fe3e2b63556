"""The leaderboard: a results store (SQLAlchemy; SQLite by default, PostgreSQL for teams),
ranked tables, exports (md, csv, json, self-contained html) and paired comparisons.

Typical use by a benchmark runner::

    from benchmark3dface.leaderboard import ResultsStore, RunInfo

    store = ResultsStore()                      # $B3F_DB or ./runs/leaderboard.sqlite
    info = RunInfo(method="deep3d", dataset="aflw2000", protocol="nme68", config=cfg, seed=0)
    if store.find_finished(info.key) is None:
        run_id = store.start_run(info)
        try:
            result = evaluate(...)              # {"metrics": ..., "per_sample": ..., "failures": ...}
        except Exception as exc:
            store.fail_run(run_id, repr(exc))
            raise
        store.finish_run(run_id, result)

See ``docs/leaderboard.md``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Light modules are imported eagerly (a benchmark runner only needs the store); the table,
# statistics, plots and reports (rich, scipy, matplotlib) load on first use.
from .migrations import MIGRATIONS, Migration, SchemaError
from .records import (
    MetricValue,
    RunInfo,
    RunKey,
    RunResult,
    SampleValues,
    StoredRun,
    coerce_result,
    config_hash,
)
from .schema import SCHEMA_VERSION
from .store import (
    DuplicateRunError,
    ResultsStore,
    StoreError,
    StoreNotFoundError,
    open_store,
    resolve_url,
)

_LAZY = {
    "GroupComparison": "compare", "compare_methods": "compare", "compare_runs": "compare",
    "metric_direction": "directions", "resolve_direction": "directions",
    "to_csv": "export", "to_json": "export", "to_markdown": "export",
    "build_report": "report",
    "PairedComparison": "stats", "ced_auc": "stats", "ced_curve": "stats", "paired_test": "stats",
    "CoverageScore": "stats", "penalised_scores": "stats",
    "LeaderboardRow": "table", "LeaderboardTable": "table", "build_tables": "table",
    "rank_runs": "table",
}

if TYPE_CHECKING:  # pragma: no cover
    from .compare import GroupComparison, compare_methods, compare_runs
    from .directions import metric_direction, resolve_direction
    from .export import to_csv, to_json, to_markdown
    from .report import build_report
    from .stats import CoverageScore, PairedComparison, ced_auc, ced_curve, paired_test, penalised_scores
    from .table import LeaderboardRow, LeaderboardTable, build_tables, rank_runs


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CoverageScore",
    "DuplicateRunError",
    "GroupComparison",
    "LeaderboardRow",
    "LeaderboardTable",
    "MetricValue",
    "Migration",
    "PairedComparison",
    "ResultsStore",
    "RunInfo",
    "RunKey",
    "RunResult",
    "SampleValues",
    "SchemaError",
    "StoreError",
    "StoreNotFoundError",
    "StoredRun",
    "build_report",
    "build_tables",
    "ced_auc",
    "ced_curve",
    "coerce_result",
    "compare_methods",
    "compare_runs",
    "config_hash",
    "metric_direction",
    "open_store",
    "paired_test",
    "penalised_scores",
    "rank_runs",
    "resolve_direction",
    "resolve_url",
    "to_csv",
    "to_json",
    "to_markdown",
]
