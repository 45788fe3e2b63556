"""Schema versioning: fresh stores match the declared schema, old stores are migrated on
open, newer or foreign schemas are refused, a failing migration changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, inspect, text

from benchmark3dface.leaderboard import MIGRATIONS, Migration, ResultsStore, SchemaError
from benchmark3dface.leaderboard import store as store_module
from benchmark3dface.leaderboard.schema import SCHEMA_VERSION, TABLES

# A version-1 store as its own DDL would have made it, written by hand in plain SQL, with
# two finished runs and their metrics. {ID} is the auto-increment key type of the backend.
V1_DDL = [
    """CREATE TABLE b3f_schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL,
       applied_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE b3f_runs (id {ID} PRIMARY KEY, method VARCHAR(200) NOT NULL,
       method_version VARCHAR(100) NOT NULL, config_json TEXT NOT NULL,
       config_hash VARCHAR(64) NOT NULL, seed INTEGER NOT NULL, dataset VARCHAR(200) NOT NULL,
       split VARCHAR(100) NOT NULL, protocol VARCHAR(200) NOT NULL, checkpoint TEXT,
       git_commit VARCHAR(64), started_at TIMESTAMP, ended_at TIMESTAMP,
       status VARCHAR(16) NOT NULL)""",
    """CREATE TABLE b3f_metrics (id {ID} PRIMARY KEY,
       run_id INTEGER NOT NULL REFERENCES b3f_runs(id) ON DELETE CASCADE,
       name VARCHAR(200) NOT NULL, value FLOAT, std FLOAT, n INTEGER, n_failed INTEGER NOT NULL,
       CONSTRAINT uq_b3f_metrics_run_name UNIQUE (run_id, name))""",
    "INSERT INTO b3f_schema_version VALUES (1, 'runs and metrics', '2024-01-01 00:00:00')",
    """INSERT INTO b3f_runs VALUES (1, 'deep3d', '1.0', '{"lr": 0.0001}', 'h1', 0, 'micc', 'test',
       'rmse', NULL, 'abc', '2024-01-01 00:00:00', '2024-01-01 01:00:00', 'finished')""",
    """INSERT INTO b3f_runs VALUES (2, 'prnet', '', '{}', 'h2', 0, 'micc', 'test', 'rmse',
       NULL, NULL, NULL, NULL, 'finished')""",
    "INSERT INTO b3f_metrics VALUES (1, 1, 'rmse', 1.66, 0.3, 53, 0)",
    "INSERT INTO b3f_metrics VALUES (2, 1, 'rmse_p90', 2.4, NULL, 53, 0)",
    "INSERT INTO b3f_metrics VALUES (3, 2, 'rmse', 1.9, 0.4, 52, 1)",
]


def _exec(url: str, statements: list[str]) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for s in statements:
            conn.execute(text(s))
    engine.dispose()


def test_fresh_store_matches_declared_schema(store_url: str) -> None:
    ResultsStore(store_url).close()
    engine = create_engine(store_url)
    insp = inspect(engine)
    for table in TABLES:
        got = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
        want = {c.name: c.nullable for c in table.columns}
        assert got == want, table.name
    assert "uq_b3f_runs_finished_key" in {i["name"] for i in insp.get_indexes("b3f_runs")}
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM b3f_schema_version ORDER BY version")).scalars().all()
    engine.dispose()
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_v1_store_is_migrated_on_open(store_url: str) -> None:
    pg = store_url.startswith("postgresql")
    _exec(store_url, [s.replace("{ID}", "SERIAL" if pg else "INTEGER") for s in V1_DDL])
    if pg:  # explicit ids above: move the sequence past them
        _exec(store_url, ["SELECT setval(pg_get_serial_sequence('b3f_runs', 'id'), 2)",
                          "SELECT setval(pg_get_serial_sequence('b3f_metrics', 'id'), 3)"])
    with ResultsStore(store_url, create=False) as store:
        assert store.schema_version == SCHEMA_VERSION
        runs = store.runs(dataset="micc")
        assert [(r.method, r.git_commit, r.n_samples, r.hardware) for r in runs] == [
            ("deep3d", "abc", 0, None), ("prnet", None, 0, None)]
        assert runs[0].config == {"lr": 0.0001}
        assert runs[0].started_at == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        assert list(runs[0].metrics) == ["rmse", "rmse_p90"]
        assert runs[1].metrics["rmse"].n_failed == 1
        assert store.check_integrity() == []  # n_metrics was back-filled from the metrics
        # the migrated store takes new runs with per-sample values
        from benchmark3dface.leaderboard import RunInfo

        new = store.record_run(RunInfo(method="new", dataset="micc", protocol="rmse"),
                               {"metrics": {"rmse": 1.5}, "per_sample": {"rmse": {"s1": 1.5}}})
        assert store.sample_values(new, "rmse").values.tolist() == [1.5]
        assert store.check_integrity() == []
    with ResultsStore(store_url) as again:  # re-opening applies nothing
        assert again.schema_version == SCHEMA_VERSION


def test_newer_store_is_refused(sqlite_url: str) -> None:
    ResultsStore(sqlite_url).close()
    _exec(sqlite_url, [f"INSERT INTO b3f_schema_version VALUES ({SCHEMA_VERSION + 1}, 'future', "
                       "'2030-01-01 00:00:00')"])
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        ResultsStore(sqlite_url)


def test_foreign_database_is_refused(sqlite_url: str) -> None:
    _exec(sqlite_url, ["CREATE TABLE b3f_runs (id INTEGER PRIMARY KEY)"])
    with pytest.raises(SchemaError, match="not created by benchmark3dface"):
        ResultsStore(sqlite_url)


def test_failing_migration_leaves_store_unchanged(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ResultsStore(store_url).close()

    def broken(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(text("CREATE TABLE b3f_half_done (id INTEGER)"))
        conn.execute(text("ALTER TABLE b3f_runs ADD COLUMN half_done INTEGER"))
        raise RuntimeError("migration bug")

    target = SCHEMA_VERSION + 1
    monkeypatch.setitem(MIGRATIONS, target, Migration(target, "broken", broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", target)
    with pytest.raises(RuntimeError, match="migration bug"):
        ResultsStore(store_url)
    monkeypatch.undo()
    engine = create_engine(store_url)
    insp = inspect(engine)
    assert not insp.has_table("b3f_half_done")  # the DDL was rolled back with the rest
    assert "half_done" not in {c["name"] for c in insp.get_columns("b3f_runs")}
    engine.dispose()
    with ResultsStore(store_url) as reopened:
        assert reopened.schema_version == SCHEMA_VERSION
        assert reopened.check_integrity() == []


def test_registry_is_contiguous() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))
    assert all(m.version == v for v, m in MIGRATIONS.items())
