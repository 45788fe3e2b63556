"""The results store: runs, their metrics and per-sample values in a SQL database.

Backends (SQLAlchemy 2.x Core):

* **SQLite** (default, embedded): a file, by default ``$B3F_DB`` or
  ``./runs/leaderboard.sqlite``. Opened in WAL mode with a busy timeout; every write runs in a
  ``BEGIN IMMEDIATE`` transaction (so writers queue on the lock instead of failing on a stale
  snapshot) and is retried with jittered back-off if the database stays locked. Several
  processes on one machine may write at once.
* **PostgreSQL** (``postgresql+psycopg2://user:pass@host:port/db``): for teams and sweeps
  over several machines. Serialisation failures and deadlocks are retried.

Every run is written in one transaction: a writer killed mid-write leaves either nothing or
a run still marked ``running`` (when it was opened with :meth:`ResultsStore.start_run`),
never a half-written finished run. :meth:`ResultsStore.check_integrity` verifies this.

Do not share a store between processes created by ``fork``; open one per process.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from .migrations import SchemaError, apply_migrations, pending, read_version
from .records import (
    MetricValue,
    RunInfo,
    RunKey,
    RunResult,
    SampleValues,
    StoredRun,
    coerce_result,
)
from .schema import (
    ALL_METRICS,
    SCHEMA_VERSION,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_RUNNING,
    STATUSES,
    metrics_table,
    runs_table,
    sample_values_table,
)

T = TypeVar("T")

#: Environment variable holding the default store (a URL or a SQLite file path).
ENV_VAR = "B3F_DB"
#: Default SQLite file, relative to the working directory.
DEFAULT_PATH = Path("runs") / "leaderboard.sqlite"

OnDuplicate = Literal["error", "skip", "replace"]


class StoreError(RuntimeError):
    """A results-store operation could not be done (the message says why)."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No store exists at the given location and ``create=False``."""


class DuplicateRunError(StoreError):
    """A finished run with the same run key is already stored."""


def resolve_url(db: str | os.PathLike[str] | None = None) -> str:
    """A SQLAlchemy URL for ``db``: a URL (anything with ``://``) is kept, a path becomes
    ``sqlite:///<absolute path>``; None means ``$B3F_DB`` or ``./runs/leaderboard.sqlite``."""
    if db is None:
        db = os.environ.get(ENV_VAR) or DEFAULT_PATH
    db = os.fspath(db)
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    """Timezone-aware UTC (naive values, as SQLite returns them, are UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _is_transient(exc: OperationalError) -> bool:
    """Lock contention (SQLite) or serialisation failure / deadlock (PostgreSQL)."""
    orig = exc.orig
    code = getattr(orig, "pgcode", None)
    if code in ("40001", "40P01"):
        return True
    message = str(orig).lower()
    return "database is locked" in message or "database table is locked" in message or (
        "database is busy" in message
    )


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class ResultsStore:
    """A results store at a SQLAlchemy URL or SQLite path (see :func:`resolve_url`).

    Opening applies pending schema migrations (:mod:`.migrations`). With ``create=False`` a
    missing store raises :class:`StoreNotFoundError` instead of being created.

    ``busy_timeout_s``: how long a SQLite writer waits for the lock before a retry;
    ``max_retries``: retries of a write transaction that hit lock contention.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        busy_timeout_s: float = 30.0,
        max_retries: int = 50,
        echo: bool = False,
    ) -> None:
        self.url = resolve_url(db)
        self.max_retries = int(max_retries)
        url = make_url(self.url)
        self.backend = url.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.backend == "sqlite":
            database = url.database or ""
            in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
            if not in_memory:
                path = Path(database)
                if not path.exists():
                    if not create:
                        raise StoreNotFoundError(
                            f"no leaderboard store at {path}: runs are recorded there by "
                            f"`b3f benchmark`; pass --db PATH|URL or set ${ENV_VAR}"
                        )
                    path.parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": float(busy_timeout_s)}
        elif self.backend == "postgresql":
            kwargs["pool_pre_ping"] = True
        self._engine: Engine = create_engine(self.url, **kwargs)
        if self.backend == "sqlite":
            self._install_sqlite_hooks(busy_timeout_s, in_memory)
        try:
            self._open(create)
        except BaseException:
            self._engine.dispose()
            raise

    # ------------------------------------------------------------------ engine plumbing
    def _install_sqlite_hooks(self, busy_timeout_s: float, in_memory: bool) -> None:
        """WAL, busy timeout, foreign keys; explicit BEGIN / BEGIN IMMEDIATE (the pysqlite
        driver's own implicit transactions are turned off, per SQLAlchemy's recipe)."""
        timeout_ms = int(busy_timeout_s * 1000)

        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            if not in_memory:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("b3f_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._engine.connect() as conn, conn.begin():
            return fn(conn)

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one write transaction; retry it on lock contention."""
        delay = 0.005
        attempt = 0
        while True:
            try:
                with self._engine.connect() as conn:
                    conn.execution_options(b3f_write=True)
                    with conn.begin():
                        return fn(conn)
            except OperationalError as exc:
                if attempt >= self.max_retries or not _is_transient(exc):
                    raise
            attempt += 1
            time.sleep(random.uniform(0.5 * delay, delay))
            delay = min(delay * 2.0, 0.5)

    def _open(self, create: bool) -> None:
        version = self._read(read_version)
        pending(version, SCHEMA_VERSION)  # raises for a store newer than this code
        if version == SCHEMA_VERSION:
            return
        if version == 0 and not create:
            raise StoreNotFoundError(
                f"no leaderboard store at {self.display_url}: runs are recorded there by "
                f"`b3f benchmark`; pass --db PATH|URL or set ${ENV_VAR}"
            )
        self._write(lambda conn: apply_migrations(conn, SCHEMA_VERSION))

    @property
    def display_url(self) -> str:
        """The URL with any password masked."""
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def schema_version(self) -> int:
        return self._read(read_version)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({self.display_url!r})"

    # ------------------------------------------------------------------ writing
    def start_run(self, info: RunInfo, *, started_at: _dt.datetime | None = None) -> int:
        """Record a run as ``running`` (committed at once) and return its id; finish it with
        :meth:`finish_run` or :meth:`fail_run`."""
        values = self._run_values(info, started_at or _now())
        return self._write(lambda conn: self._insert_run(conn, values))

    def finish_run(
        self,
        run_id: int,
        result: Any,
        *,
        ended_at: _dt.datetime | None = None,
        on_duplicate: Literal["error", "replace"] = "error",
        chunk_size: int = 5000,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> None:
        """Store ``result`` (see :func:`~.records.coerce_result`) for a running run and mark
        it finished, all in one transaction.

        ``on_duplicate``: what to do when a finished run with the same key exists --
        ``"error"`` raises :class:`DuplicateRunError`, ``"replace"`` deletes the old one.
        Per-sample rows are inserted ``chunk_size`` at a time; ``on_chunk(written, total)``
        is called after each chunk (progress reporting).
        """
        if on_duplicate not in ("error", "replace"):
            raise ValueError(f"on_duplicate must be 'error' or 'replace', got {on_duplicate!r}")
        res = coerce_result(result)
        end = ended_at or _now()

        def txn(conn: Connection) -> None:
            row = conn.execute(
                select(runs_table).where(runs_table.c.id == run_id)
            ).mappings().first()
            if row is None:
                raise StoreError(f"run {run_id} does not exist in {self.display_url}")
            if row["status"] != STATUS_RUNNING:
                raise StoreError(f"run {run_id} is {row['status']}, not running; cannot finish it")
            key = RunKey(*(row[c] for c in ("method", "config_hash", "seed", "dataset", "split", "protocol")))
            self._write_result(conn, run_id, key, res, end, on_duplicate, chunk_size, on_chunk)

        self._write(txn)

    def record_run(
        self,
        info: RunInfo,
        result: Any,
        *,
        started_at: _dt.datetime | None = None,
        ended_at: _dt.datetime | None = None,
        on_duplicate: OnDuplicate = "error",
        chunk_size: int = 5000,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> int:
        """Store a whole finished run (provenance, metrics, per-sample values) in one
        transaction and return its id.

        ``on_duplicate``: ``"error"`` (raise :class:`DuplicateRunError`), ``"skip"`` (keep the
        stored run and return its id) or ``"replace"`` (delete it and store this one).
        """
        if on_duplicate not in ("error", "skip", "replace"):
            raise ValueError(f"on_duplicate must be 'error', 'skip' or 'replace', got {on_duplicate!r}")
        res = coerce_result(result)
        end = ended_at or _now()
        values = self._run_values(info, started_at or end)
        key = info.key

        def txn(conn: Connection) -> int:
            if on_duplicate == "skip":
                existing = self._find_finished_id(conn, key)
                if existing is not None:
                    return existing
            run_id = self._insert_run(conn, values)
            self._write_result(
                conn, run_id, key, res, end, on_duplicate if on_duplicate != "skip" else "error",
                chunk_size, on_chunk,
            )
            return run_id

        return self._write(txn)

    def fail_run(self, run_id: int, reason: str, *, ended_at: _dt.datetime | None = None) -> None:
        """Mark a running run as failed with a reason (no metrics are kept)."""
        end = ended_at or _now()

        def txn(conn: Connection) -> None:
            done = conn.execute(
                update(runs_table)
                .where(and_(runs_table.c.id == run_id, runs_table.c.status == STATUS_RUNNING))
                .values(status=STATUS_FAILED, status_reason=str(reason), ended_at=end)
            ).rowcount
            if done != 1:
                raise StoreError(f"run {run_id} is not a running run in {self.display_url}")

        self._write(txn)

    def delete_run(self, run_id: int) -> bool:
        """Delete a run with its metrics and per-sample values; False when it did not exist."""

        def txn(conn: Connection) -> bool:
            self._delete_children(conn, [run_id])
            return conn.execute(delete(runs_table).where(runs_table.c.id == run_id)).rowcount == 1

        return self._write(txn)

    @staticmethod
    def _run_values(info: RunInfo, started_at: _dt.datetime) -> dict[str, Any]:
        if not isinstance(info, RunInfo):
            raise TypeError(f"expected a RunInfo, got {type(info).__name__}")
        return {
            "method": info.method,
            "method_version": info.method_version or "",
            "config_json": json.dumps(dict(info.config), sort_keys=True, allow_nan=False),
            "config_hash": info.config_hash,
            "seed": info.seed,
            "dataset": info.dataset,
            "split": info.split,
            "protocol": info.protocol,
            "checkpoint": info.checkpoint,
            "git_commit": info.git_commit,
            "hardware": info.hardware_text(),
            "started_at": _utc(started_at),
            "status": STATUS_RUNNING,
        }

    @staticmethod
    def _insert_run(conn: Connection, values: dict[str, Any]) -> int:
        return int(conn.execute(insert(runs_table).values(**values)).inserted_primary_key[0])

    @staticmethod
    def _delete_children(conn: Connection, run_ids: list[int]) -> None:
        # explicit (not only ON DELETE CASCADE) so it holds without SQLite's foreign_keys
        conn.execute(delete(sample_values_table).where(sample_values_table.c.run_id.in_(run_ids)))
        conn.execute(delete(metrics_table).where(metrics_table.c.run_id.in_(run_ids)))

    @staticmethod
    def _key_clause(key: RunKey) -> Any:
        c = runs_table.c
        return and_(
            c.method == key.method,
            c.config_hash == key.config_hash,
            c.seed == key.seed,
            c.dataset == key.dataset,
            c.split == key.split,
            c.protocol == key.protocol,
            c.status == STATUS_FINISHED,
        )

    def _find_finished_id(self, conn: Connection, key: RunKey) -> int | None:
        found = conn.execute(select(runs_table.c.id).where(self._key_clause(key))).scalar()
        return None if found is None else int(found)

    def _write_result(
        self,
        conn: Connection,
        run_id: int,
        key: RunKey,
        res: RunResult,
        ended_at: _dt.datetime,
        on_duplicate: str,
        chunk_size: int,
        on_chunk: Callable[[int, int], None] | None,
    ) -> None:
        existing = conn.execute(
            select(runs_table.c.id).where(and_(self._key_clause(key), runs_table.c.id != run_id))
        ).scalars().all()
        if existing:
            if on_duplicate == "replace":
                self._delete_children(conn, list(existing))
                conn.execute(delete(runs_table).where(runs_table.c.id.in_(existing)))
            else:
                raise DuplicateRunError(
                    f"a finished run with the same key is already stored (run {existing[0]}): "
                    f"{key}; use on_duplicate='replace' or 'skip'"
                )
        if res.metrics:
            conn.execute(
                insert(metrics_table),
                [
                    {"run_id": run_id, "name": name, "value": m.value, "std": m.std, "n": m.n,
                     "n_failed": m.n_failed, "direction": m.direction, "unit": m.unit,
                     "sample_metric": m.sample_metric}
                    for name, m in res.metrics.items()
                ],
            )
        rows = res.sample_rows()
        step = max(1, int(chunk_size))
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            for r in chunk:
                r["run_id"] = run_id
            conn.execute(insert(sample_values_table), chunk)
            if on_chunk is not None:
                on_chunk(min(start + step, len(rows)), len(rows))
        try:
            conn.execute(
                update(runs_table)
                .where(runs_table.c.id == run_id)
                .values(
                    status=STATUS_FINISHED,
                    ended_at=_utc(ended_at),
                    n_metrics=len(res.metrics),
                    n_samples=len(rows),
                )
            )
        except IntegrityError as exc:  # a concurrent writer finished the same key first
            raise DuplicateRunError(
                f"a finished run with the same key was stored concurrently: {key}"
            ) from exc

    # ------------------------------------------------------------------ reading
    def find_finished(self, key: RunKey | RunInfo) -> StoredRun | None:
        """The finished run with this run key, or None (lets a runner skip finished work)."""
        if isinstance(key, RunInfo):
            key = key.key

        def txn(conn: Connection) -> StoredRun | None:
            run_id = self._find_finished_id(conn, key)
            return None if run_id is None else self._load_runs(conn, runs_table.c.id == run_id)[0]

        return self._read(txn)

    def get_run(self, run_id: int) -> StoredRun:
        """One run by id (any status); ``KeyError`` when absent."""
        found = self._read(lambda conn: self._load_runs(conn, runs_table.c.id == int(run_id)))
        if not found:
            raise KeyError(f"no run {run_id} in {self.display_url}")
        return found[0]

    def runs(
        self,
        *,
        dataset: str | Sequence[str] | None = None,
        split: str | Sequence[str] | None = None,
        protocol: str | Sequence[str] | None = None,
        method: str | Sequence[str] | None = None,
        status: str | None = STATUS_FINISHED,
    ) -> list[StoredRun]:
        """Runs matching every given filter (a value or a list of accepted values), oldest
        first, with their metrics. ``status=None`` returns runs of every status."""
        c = runs_table.c
        clauses = []
        for column, wanted in (
            (c.dataset, dataset), (c.split, split), (c.protocol, protocol), (c.method, method)
        ):
            values = _as_list(wanted)
            if values is not None:
                clauses.append(column.in_(values))
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES} or None, got {status!r}")
            clauses.append(c.status == status)
        where = and_(*clauses) if clauses else None
        return self._read(lambda conn: self._load_runs(conn, where))

    def _load_runs(self, conn: Connection, where: Any) -> list[StoredRun]:
        query = select(runs_table).order_by(runs_table.c.id)
        ids_query = select(runs_table.c.id)
        if where is not None:
            query = query.where(where)
            ids_query = ids_query.where(where)
        rows = conn.execute(query).mappings().all()
        if not rows:
            return []
        metrics: dict[int, dict[str, MetricValue]] = {}
        mrows = conn.execute(
            select(metrics_table)
            .where(metrics_table.c.run_id.in_(ids_query.scalar_subquery()))
            .order_by(metrics_table.c.run_id, metrics_table.c.id)
        ).mappings()
        for m in mrows:
            metrics.setdefault(m["run_id"], {})[m["name"]] = MetricValue(
                value=m["value"], std=m["std"], n=m["n"], n_failed=m["n_failed"],
                direction=m["direction"], unit=m["unit"], sample_metric=m["sample_metric"],
            )
        return [
            StoredRun(
                id=r["id"],
                method=r["method"],
                method_version=r["method_version"],
                config=json.loads(r["config_json"]),
                config_hash=r["config_hash"],
                seed=r["seed"],
                dataset=r["dataset"],
                split=r["split"],
                protocol=r["protocol"],
                checkpoint=r["checkpoint"],
                git_commit=r["git_commit"],
                hardware=r["hardware"],
                started_at=_utc(r["started_at"]),
                ended_at=_utc(r["ended_at"]),
                status=r["status"],
                status_reason=r["status_reason"],
                n_samples=r["n_samples"],
                metrics=metrics.get(r["id"], {}),
            )
            for r in rows
        ]

    def per_sample_metrics(self, run_id: int) -> list[str]:
        """Metric names that have per-sample rows for this run (sorted; ``"*"`` excluded)."""
        t = sample_values_table
        names = self._read(
            lambda conn: conn.execute(
                select(t.c.metric).where(t.c.run_id == run_id).distinct()
            ).scalars().all()
        )
        return sorted(n for n in names if n != ALL_METRICS)

    def sample_values(self, run_id: int, metric: str) -> SampleValues:
        """Per-sample values of ``metric`` for run ``run_id``; failures include samples that
        failed for every metric. Ids come back sorted."""
        return self.sample_values_of_runs([run_id], metric)[run_id]

    def sample_values_of_runs(self, run_ids: Iterable[int], metric: str) -> dict[int, SampleValues]:
        """:meth:`sample_values` of ``metric`` for several runs in one query (run id ->
        values; a run without rows gets empty arrays and no failures)."""
        wanted = sorted({int(r) for r in run_ids})
        if not wanted:
            return {}
        t = sample_values_table

        def txn(conn: Connection) -> list[Any]:
            return conn.execute(
                select(t.c.run_id, t.c.metric, t.c.sample_id, t.c.value, t.c.failure_reason,
                       t.c.abs_yaw_deg)
                .where(and_(t.c.run_id.in_(wanted), or_(t.c.metric == metric, t.c.metric == ALL_METRICS)))
            ).all()

        by_run: dict[int, list[Any]] = {r: [] for r in wanted}
        for row in self._read(txn):
            by_run[int(row.run_id)].append(row)
        return {run_id: _sample_values(run_id, metric, rows) for run_id, rows in by_run.items()}

    # ------------------------------------------------------------------ checks
    def check_integrity(self) -> list[str]:
        """Problems found in the store (empty list = consistent).

        Checks: SQLite ``PRAGMA integrity_check`` and ``foreign_key_check``; no metric or
        per-sample row without its run; every finished run has exactly the number of metric
        and per-sample rows recorded when it finished; running/failed runs own no rows;
        statuses are known; the schema is current.
        """
        return self._read(self._integrity_problems)

    def _integrity_problems(self, conn: Connection) -> list[str]:
        problems: list[str] = []
        if self.backend == "sqlite":
            result = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check").all()]
            if result != ["ok"]:
                problems.append(f"sqlite integrity_check: {'; '.join(map(str, result))}")
            fk = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if fk:
                problems.append(f"sqlite foreign_key_check: {len(fk)} rows reference missing parents")
        version = read_version(conn)
        if version != SCHEMA_VERSION:
            problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
        r = runs_table.c
        for table, label in ((metrics_table, "metric"), (sample_values_table, "per-sample")):
            orphans = conn.execute(
                select(func.count()).select_from(table).where(
                    ~table.c.run_id.in_(select(r.id).scalar_subquery())
                )
            ).scalar_one()
            if orphans:
                problems.append(f"{orphans} {label} rows belong to no run")
        n_metric = (
            select(func.count()).where(metrics_table.c.run_id == r.id).scalar_subquery()
        )
        n_sample = (
            select(func.count()).where(sample_values_table.c.run_id == r.id).scalar_subquery()
        )
        rows = conn.execute(
            select(r.id, r.status, r.n_metrics, r.n_samples, n_metric.label("m"), n_sample.label("s"))
        ).all()
        for row in rows:
            if row.status not in STATUSES:
                problems.append(f"run {row.id}: unknown status {row.status!r}")
            elif row.status == STATUS_FINISHED:
                if (row.m, row.s) != (row.n_metrics, row.n_samples):
                    problems.append(
                        f"run {row.id}: finished with {row.n_metrics} metrics and "
                        f"{row.n_samples} per-sample rows recorded, but {row.m} and {row.s} stored"
                    )
            elif row.m or row.s:
                problems.append(
                    f"run {row.id}: {row.status} but owns {row.m} metric and {row.s} per-sample rows"
                )
        return problems

    def runs_by_status(self) -> dict[str, int]:
        """Number of runs per status."""
        rows = self._read(
            lambda conn: conn.execute(
                select(runs_table.c.status, func.count()).group_by(runs_table.c.status)
            ).all()
        )
        return {status: int(n) for status, n in rows}


def _sample_values(run_id: int, metric: str, rows: Sequence[Any]) -> SampleValues:
    """A :class:`SampleValues` from the ``(metric, sample_id, value, failure_reason)`` rows of
    one run (rows of ``metric`` and of ``"*"``)."""
    ids_list = [r.sample_id for r in rows if r.metric == metric and r.value is not None]
    values = np.fromiter(
        (r.value for r in rows if r.metric == metric and r.value is not None),
        dtype=np.float64, count=len(ids_list),
    )
    ids = np.asarray(ids_list, dtype=str)
    order = np.argsort(ids, kind="stable")  # code-point order, whatever the DB collation
    ids, values = ids[order], values[order]
    have = set(ids_list)
    failures: dict[str, str] = {}
    for r in rows:
        if r.value is None and r.sample_id not in have:
            failures.setdefault(r.sample_id, r.failure_reason or "failed")
    yaw = {str(r.sample_id): float(r.abs_yaw_deg) for r in rows if r.abs_yaw_deg is not None}
    return SampleValues(run_id=run_id, metric=metric, ids=ids, values=values, failures=failures, yaw=yaw)


def open_store(db: str | os.PathLike[str] | None = None, **kwargs: Any) -> ResultsStore:
    """Shorthand for :class:`ResultsStore` (``db`` = URL, path or None for the default)."""
    return ResultsStore(db, **kwargs)


__all__: Iterable[str] = [
    "DEFAULT_PATH",
    "ENV_VAR",
    "DuplicateRunError",
    "ResultsStore",
    "SchemaError",
    "StoreError",
    "StoreNotFoundError",
    "open_store",
    "resolve_url",
]
