"""Schema migrations of the results store, applied when a store is opened.

:data:`MIGRATIONS` maps a version ``v`` to the :class:`Migration` that brings a store from
version ``v - 1`` to ``v`` (version 0 is an empty database). Opening a store reads its
version (the largest row of ``b3f_schema_version``) and applies every newer migration in one
transaction, under a lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-level advisory lock
on PostgreSQL) so that several processes opening the same new store at once migrate it once.
Both backends run DDL transactionally: a migration that fails leaves the store at its old
version.

Each migration spells out the tables *as they were at that version* (never the current
:mod:`.schema` tables), so an old store always follows the same path.

History:

1. ``b3f_schema_version``, ``b3f_runs`` (provenance, run key, status) and ``b3f_metrics``.
2. per-sample values (``b3f_sample_values``) for CED curves and paired tests; on runs:
   ``hardware``, ``status_reason``, ``n_metrics``, ``n_samples`` (``n_metrics`` back-filled
   from the metrics table, ``n_samples`` = 0 for older runs, which had no per-sample rows).
3. the protocol's declarations on each metric: ``direction`` (``lower`` / ``higher``),
   ``unit`` and ``sample_metric`` (the per-sample metric it summarises); NULL for older runs,
   whose direction the leaderboard then guesses from the metric name (and says so).
4. ``abs_yaw_deg`` on per-sample values: the sample's ground-truth |yaw| (degrees), recorded
   by the evaluation for the per-yaw-bin boards; NULL for older runs (their samples take the
   yaw other runs of the same board recorded for the same sample id, else stay out of the bins).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
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
    func,
    inspect,
    select,
    text,
)

from .schema import SCHEMA_VERSION, _BigId, schema_version_table

#: Advisory-lock key taken on PostgreSQL while migrating (any constant bigint).
PG_MIGRATION_LOCK_KEY = 0x62336644_42


class SchemaError(RuntimeError):
    """The database is not a results store this code can use."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema history: ``upgrade(conn)`` brings version ``version - 1`` to
    ``version`` inside the caller's transaction."""

    version: int
    description: str
    upgrade: Callable[[Connection], None]


def _v1_tables() -> MetaData:
    md = MetaData()
    Table(
        "b3f_schema_version",
        md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", Text, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    )
    runs = Table(
        "b3f_runs",
        md,
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
    )
    Index("ix_b3f_runs_lookup", runs.c.dataset, runs.c.protocol, runs.c.method)
    key = ("method", "config_hash", "seed", "dataset", "split", "protocol")
    Index(
        "uq_b3f_runs_finished_key",
        *(runs.c[name] for name in key),
        unique=True,
        sqlite_where=runs.c.status == "finished",
        postgresql_where=runs.c.status == "finished",
    )
    Table(
        "b3f_metrics",
        md,
        Column("id", Integer, primary_key=True),
        Column(
            "run_id", Integer, ForeignKey("b3f_runs.id", ondelete="CASCADE"), nullable=False
        ),
        Column("name", String(200), nullable=False),
        Column("value", Float, nullable=True),
        Column("std", Float, nullable=True),
        Column("n", Integer, nullable=True),
        Column("n_failed", Integer, nullable=False),
        UniqueConstraint("run_id", "name", name="uq_b3f_metrics_run_name"),
    )
    return md


def _upgrade_to_v1(conn: Connection) -> None:
    _v1_tables().create_all(conn)


def _upgrade_to_v2(conn: Connection) -> None:
    for ddl in (
        "ALTER TABLE b3f_runs ADD COLUMN hardware TEXT",
        "ALTER TABLE b3f_runs ADD COLUMN status_reason TEXT",
        "ALTER TABLE b3f_runs ADD COLUMN n_metrics INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE b3f_runs ADD COLUMN n_samples INTEGER DEFAULT 0 NOT NULL",
    ):
        conn.execute(text(ddl))
    conn.execute(
        text(
            "UPDATE b3f_runs SET n_metrics = "
            "(SELECT COUNT(*) FROM b3f_metrics m WHERE m.run_id = b3f_runs.id)"
        )
    )
    md = MetaData()
    Table("b3f_runs", md, Column("id", Integer, primary_key=True))
    samples = Table(
        "b3f_sample_values",
        md,
        Column("id", _BigId, primary_key=True),
        Column(
            "run_id", Integer, ForeignKey("b3f_runs.id", ondelete="CASCADE"), nullable=False
        ),
        Column("metric", String(200), nullable=False),
        Column("sample_id", String(500), nullable=False),
        Column("value", Float, nullable=True),
        Column("failure_reason", Text, nullable=True),
        UniqueConstraint("run_id", "metric", "sample_id", name="uq_b3f_sample_values_key"),
    )
    samples.create(conn)


def _upgrade_to_v3(conn: Connection) -> None:
    for ddl in (
        "ALTER TABLE b3f_metrics ADD COLUMN direction VARCHAR(8)",
        "ALTER TABLE b3f_metrics ADD COLUMN unit VARCHAR(32)",
        "ALTER TABLE b3f_metrics ADD COLUMN sample_metric VARCHAR(200)",
    ):
        conn.execute(text(ddl))


def _upgrade_to_v4(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE b3f_sample_values ADD COLUMN abs_yaw_deg FLOAT"))


#: The migration registry: target version -> migration.
MIGRATIONS: dict[int, Migration] = {
    1: Migration(1, "runs and metrics", _upgrade_to_v1),
    2: Migration(2, "per-sample values; run hardware, status reason and row counts", _upgrade_to_v2),
    3: Migration(3, "metric direction, unit and per-sample metric declared by the protocol", _upgrade_to_v3),
    4: Migration(4, "ground-truth |yaw| of each per-sample value (per-yaw-bin boards)", _upgrade_to_v4),
}

assert max(MIGRATIONS) == SCHEMA_VERSION and sorted(MIGRATIONS) == list(
    range(1, SCHEMA_VERSION + 1)
), "MIGRATIONS must cover versions 1..SCHEMA_VERSION without gaps"


def read_version(conn: Connection) -> int:
    """The store's schema version: 0 for a database without b3f tables.

    Raises :class:`SchemaError` for a database that has ``b3f_runs`` but no version table
    (not written by this code).
    """
    inspector = inspect(conn)
    if not inspector.has_table(schema_version_table.name):
        if inspector.has_table("b3f_runs"):
            raise SchemaError(
                "the database has a 'b3f_runs' table but no 'b3f_schema_version' table, so it "
                "was not created by benchmark3dface's leaderboard store; use another database"
            )
        return 0
    version = conn.execute(select(func.max(schema_version_table.c.version))).scalar()
    return int(version or 0)


def pending(current: int, target: int = SCHEMA_VERSION) -> list[Migration]:
    """Migrations to apply, in order, to go from ``current`` to ``target``."""
    if current > target:
        raise SchemaError(
            f"the store has schema version {current} but this benchmark3dface knows versions up "
            f"to {target}; upgrade benchmark3dface to read it"
        )
    return [MIGRATIONS[v] for v in range(current + 1, target + 1)]


def apply_migrations(conn: Connection, target: int = SCHEMA_VERSION) -> list[int]:
    """Bring the store reached by ``conn`` to ``target`` inside the caller's (write)
    transaction; returns the versions applied (empty when already current).

    The caller holds the write lock (SQLite ``BEGIN IMMEDIATE``); on PostgreSQL this takes a
    transaction-level advisory lock first, so concurrent openers serialise here and the
    later ones see the version the first one wrote.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))
    applied: list[int] = []
    for migration in pending(read_version(conn), target):
        migration.upgrade(conn)
        conn.execute(
            schema_version_table.insert().values(
                version=migration.version,
                description=migration.description,
                applied_at=_dt.datetime.now(_dt.timezone.utc),
            )
        )
        applied.append(migration.version)
    return applied
