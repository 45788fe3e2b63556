"""The results store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, delete, insert, update
from sqlalchemy.exc import IntegrityError

from benchmark3dface.leaderboard import (
    DuplicateRunError,
    ResultsStore,
    RunInfo,
    StoreError,
    StoreNotFoundError,
    resolve_url,
)
from benchmark3dface.leaderboard.schema import runs_table, sample_values_table

from lb_fake import fake_result


def _info(method: str = "deep3d", **kw: object) -> RunInfo:
    base = dict(dataset="aflw2000-3d", protocol="nme68", config={"lr": 1e-4, "method": method})
    base.update(kw)
    return RunInfo(method=method, **base)  # type: ignore[arg-type]


def test_record_and_read_back(store_url: str) -> None:
    rng = np.random.default_rng(0)
    result = fake_result(rng, 60, 3.0, fail_rate=0.1)
    t0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    info = _info(method_version="2.1", checkpoint="/ckpt/a.ckpt", git_commit="abc123",
                 hardware={"gpu": "H100"}, seed=7)
    with ResultsStore(store_url) as store:
        run_id = store.record_run(info, result, started_at=t0, ended_at=t0 + dt.timedelta(hours=1))
        run = store.get_run(run_id)
        assert (run.method, run.method_version, run.seed, run.checkpoint, run.git_commit) == (
            "deep3d", "2.1", 7, "/ckpt/a.ckpt", "abc123")
        assert run.config == info.config and run.config_hash == info.config_hash
        assert run.hardware == '{"gpu": "H100"}'
        assert run.started_at == t0 and run.ended_at == t0 + dt.timedelta(hours=1)
        assert run.status == "finished"
        assert list(run.metrics) == list(result["metrics"])
        for name, m in result["metrics"].items():
            assert run.metrics[name].value == pytest.approx(m["value"])
            assert run.metrics[name].n == m["n"]
        sv = store.sample_values(run_id, "nme")
        assert dict(zip(sv.ids.tolist(), sv.values.tolist())) == pytest.approx(result["per_sample"]["nme"])
        assert sv.failures == result["failures"]
        assert sv.n_total == 60
        assert run.n_samples == 60  # values + whole-sample failures
        assert store.per_sample_metrics(run_id) == ["nme"]
        assert store.find_finished(info.key).id == run_id
        assert store.find_finished(_info(seed=8).key) is None
        assert store.check_integrity() == []


def test_run_lifecycle_and_filters(store_url: str) -> None:
    rng = np.random.default_rng(1)
    with ResultsStore(store_url) as store:
        running = store.start_run(_info("a"))
        assert store.find_finished(_info("a")) is None  # running runs are not "finished"
        store.finish_run(running, fake_result(rng, 10, 2.0))
        assert store.find_finished(_info("a")).id == running
        with pytest.raises(StoreError, match="not running"):
            store.finish_run(running, fake_result(rng, 10, 2.0))
        failed = store.start_run(_info("b"))
        store.fail_run(failed, "CUDA out of memory")
        with pytest.raises(StoreError, match="not a running run"):
            store.fail_run(failed, "again")
        store.record_run(_info("c", dataset="micc", protocol="rmse"), {"metrics": {"rmse": 1.7}})
        assert [r.method for r in store.runs()] == ["a", "c"]
        assert [r.method for r in store.runs(dataset="micc")] == ["c"]
        assert [r.method for r in store.runs(method=["a", "b"])] == ["a"]
        assert [r.status_reason for r in store.runs(status="failed")] == ["CUDA out of memory"]
        assert store.runs_by_status() == {"finished": 2, "failed": 1}
        assert store.delete_run(running) and not store.delete_run(running)
        assert [r.method for r in store.runs()] == ["c"]
        assert store.check_integrity() == []
        with pytest.raises(KeyError):
            store.get_run(running)


def test_duplicate_run_keys(store_url: str) -> None:
    with ResultsStore(store_url) as store:
        first = store.record_run(_info(), {"metrics": {"nme": 3.0}})
        with pytest.raises(DuplicateRunError, match="already stored"):
            store.record_run(_info(), {"metrics": {"nme": 2.0}})
        assert store.record_run(_info(), {"metrics": {"nme": 2.0}}, on_duplicate="skip") == first
        other_seed = store.record_run(_info(seed=1), {"metrics": {"nme": 2.5}})
        replaced = store.record_run(_info(), {"metrics": {"nme": 2.0}, "per_sample": {"nme": {"a": 2.0}}},
                                    on_duplicate="replace")
        assert sorted(r.id for r in store.runs()) == sorted([other_seed, replaced])
        assert store.get_run(replaced).metrics["nme"].value == 2.0
        running = store.start_run(_info())
        with pytest.raises(DuplicateRunError):
            store.finish_run(running, {"metrics": {"nme": 1.0}})
        assert store.get_run(running).status == "running"  # the failed finish rolled back
        assert store.check_integrity() == []
        # the database itself refuses two finished runs with one key (partial unique index)
        engine = create_engine(store_url)
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(update(runs_table).where(runs_table.c.id == running).values(status="finished"))
        engine.dispose()


def test_integrity_check_detects_damage(store_url: str) -> None:
    rng = np.random.default_rng(2)
    with ResultsStore(store_url) as store:
        run_id = store.record_run(_info(), fake_result(rng, 20, 2.0))
        running = store.start_run(_info("b"))
        assert store.check_integrity() == []
        engine = create_engine(store_url)
        with engine.begin() as conn:  # half-written: remove a row behind the store's back
            conn.execute(delete(sample_values_table).where(
                sample_values_table.c.id == conn.execute(
                    sample_values_table.select().where(sample_values_table.c.run_id == run_id)
                ).first().id))
            conn.execute(insert(sample_values_table).values(
                run_id=running, metric="nme", sample_id="x", value=1.0))
        engine.dispose()
        problems = store.check_integrity()
        assert any(f"run {run_id}: finished with" in p for p in problems)
        assert any(f"run {running}: running but owns" in p for p in problems)


def test_open_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no leaderboard store"):
        ResultsStore(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()


def test_default_url_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("B3F_DB", raising=False)
    assert resolve_url() == f"sqlite:///{tmp_path / 'runs' / 'leaderboard.sqlite'}"
    monkeypatch.setenv("B3F_DB", "postgresql+psycopg2://u:secret@h/db")
    assert resolve_url() == "postgresql+psycopg2://u:secret@h/db"
    monkeypatch.setenv("B3F_DB", "other.sqlite")
    with ResultsStore() as store:
        assert store.display_url == f"sqlite:///{tmp_path / 'other.sqlite'}"
    assert (tmp_path / "other.sqlite").exists()


def test_password_is_masked(pg_url: str) -> None:
    with ResultsStore(pg_url) as store:
        assert "***" not in store.display_url  # no password in this URL
    url = pg_url.replace("b3f@", "b3f:hunter2@")  # trust auth ignores the password
    with ResultsStore(url) as store:
        assert "hunter2" not in store.display_url and "***" in store.display_url
        assert "hunter2" not in repr(store)


def test_sqlite_write_waits_and_retries_while_locked(tmp_path: Path) -> None:
    import sqlite3
    import threading
    import time

    from sqlalchemy.exc import OperationalError

    path = tmp_path / "locked.sqlite"
    ResultsStore(path).close()
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with ResultsStore(path, busy_timeout_s=0.02, max_retries=0) as impatient:
            with pytest.raises(OperationalError, match="locked"):
                impatient.record_run(_info("x"), {"metrics": {"nme": 1.0}})
        release = threading.Timer(0.4, locker.execute, ["COMMIT"])
        release.start()
        t0 = time.monotonic()
        with ResultsStore(path, busy_timeout_s=0.02, max_retries=1000) as patient:
            run_id = patient.record_run(_info("y"), {"metrics": {"nme": 1.0}})
            assert time.monotonic() - t0 >= 0.3  # it waited for the lock, retrying
            assert [r.id for r in patient.runs()] == [run_id]
            assert patient.check_integrity() == []
        release.join()
    finally:
        locker.close()
