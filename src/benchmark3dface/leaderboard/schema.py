"""The results-store schema (SQLAlchemy Core), at its current version.

Four tables, all prefixed ``b3f_`` so a store can live in a shared PostgreSQL database:

``b3f_schema_version``
    one row per applied migration (``version``, ``description``, ``applied_at``); the store's
    version is the largest ``version``.
``b3f_runs``
    one evaluation run: method, method version, config (canonical JSON) and its SHA-256 hash,
    seed, dataset, split, protocol, checkpoint path, git commit, hardware, start/end time
    (UTC), status (``running`` / ``finished`` / ``failed``) with a reason, and the number of
    metric and per-sample rows written when it finished (checked by the integrity check).
    The *run key* (method, config_hash, seed, dataset, split, protocol) is unique among
    finished runs (a partial unique index), so a benchmark runner can skip finished work.
``b3f_metrics``
    one named number per run: value, std, n (samples that produced a value), n_failed, and
    the protocol's declarations: direction (``lower`` / ``higher`` is better), unit, and the
    per-sample metric it summarises (NULL for runs recorded before version 3).
``b3f_sample_values``
    per-sample values for CED curves and paired tests: (run, metric, sample id) -> value, or
    NULL with a failure reason. ``metric = '*'`` marks a sample that failed for every metric.
    ``abs_yaw_deg`` (version 4): the sample's ground-truth |yaw| in degrees, recorded by the
    evaluation for the per-yaw-bin boards (NULL when unknown or recorded before version 4).

The tables here are what the migrations in :mod:`.migrations` build; a test checks that a
freshly migrated store has exactly these columns.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

#: The schema version this code reads and writes (the highest migration).
SCHEMA_VERSION = 4

#: Metric name used in ``b3f_sample_values`` for a sample that failed for every metric.
ALL_METRICS = "*"

#: Run statuses.
STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUSES = (STATUS_RUNNING, STATUS_FINISHED, STATUS_FAILED)

#: Columns of the natural run key, in order.
RUN_KEY_COLUMNS = ("method", "config_hash", "seed", "dataset", "split", "protocol")

# BIGINT on PostgreSQL, INTEGER (the rowid alias, autoincrementing) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

schema_version_table = Table(
    "b3f_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

runs_table = Table(
    "b3f_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("method", String(200), nullable=False),
    Column("method_version", String(100), nullable=False),
    Column("config_json", Text, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("split", String(100), nullable=False),
    Column("protocol", String(200), nullable=False),
    Column("checkpoint", Text, nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),
    # added in version 2
    Column("hardware", Text, nullable=True),
    Column("status_reason", Text, nullable=True),
    Column("n_metrics", Integer, nullable=False, server_default=text("0")),
    Column("n_samples", Integer, nullable=False, server_default=text("0")),
)
Index("ix_b3f_runs_lookup", runs_table.c.dataset, runs_table.c.protocol, runs_table.c.method)
Index(
    "uq_b3f_runs_finished_key",
    *(runs_table.c[name] for name in RUN_KEY_COLUMNS),
    unique=True,
    sqlite_where=runs_table.c.status == STATUS_FINISHED,
    postgresql_where=runs_table.c.status == STATUS_FINISHED,
)

metrics_table = Table(
    "b3f_metrics",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "run_id", Integer, ForeignKey("b3f_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("name", String(200), nullable=False),
    Column("value", Float, nullable=True),
    Column("std", Float, nullable=True),
    Column("n", Integer, nullable=True),
    Column("n_failed", Integer, nullable=False),
    # added in version 3: the protocol's declarations
    Column("direction", String(8), nullable=True),
    Column("unit", String(32), nullable=True),
    Column("sample_metric", String(200), nullable=True),
    UniqueConstraint("run_id", "name", name="uq_b3f_metrics_run_name"),
)

sample_values_table = Table(
    "b3f_sample_values",
    metadata,
    Column("id", _BigId, primary_key=True),
    Column(
        "run_id", Integer, ForeignKey("b3f_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("metric", String(200), nullable=False),
    Column("sample_id", String(500), nullable=False),
    Column("value", Float, nullable=True),
    Column("failure_reason", Text, nullable=True),
    # added in version 4: the sample's ground-truth |yaw| (degrees), for the per-yaw-bin boards
    Column("abs_yaw_deg", Float, nullable=True),
    UniqueConstraint("run_id", "metric", "sample_id", name="uq_b3f_sample_values_key"),
)

#: Every table the store owns, parents first.
TABLES = (schema_version_table, runs_table, metrics_table, sample_values_table)
