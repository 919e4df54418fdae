"""The database handle: schema versions, transactions, and fair turns for SQLite writers."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import TrendFactory
from trend.errors import ConfigError, StorageError
from trend.storage import checkpoints
from trend.storage.engine import Database
from trend.storage.shared.schema import SCHEMA_VERSION


class TestSchema:
    def test_created_on_first_use_with_its_version(self, make_trend: TrendFactory) -> None:
        trend = make_trend()
        with trend.db.read() as conn:
            assert conn.execute(text("SELECT value FROM trend_schema WHERE name = 'version'")).scalar() == str(
                SCHEMA_VERSION)
            assert conn.execute(text("SELECT count(*) FROM fact_events")).scalar() == 0

    def test_a_newer_schema_is_refused(self, make_trend: TrendFactory, database_url: str) -> None:
        trend = make_trend()
        with trend.db.write() as conn:
            conn.execute(text("UPDATE trend_schema SET value = '999' WHERE name = 'version'"))
        newer = Database(database_url)
        try:
            with pytest.raises(StorageError, match="schema version 999, newer than"):
                newer.ensure_schema()
        finally:
            newer.dispose()

    def test_the_indexes_for_some_rows_only_cover_those_rows_where_the_backend_can(
            self, make_trend: TrendFactory) -> None:
        """Declared before any backend is known, a partial index's condition reaches a backend's DDL when
        that backend opens a database (so a SQLite process never loads PostgreSQL's dialect to declare it)."""
        trend = make_trend()
        wanted = {"fact_events_event_id": "event_id IS NOT NULL", "job_runs_running": "'running'"}
        with trend.db.read() as tx:
            backend = tx.conn.dialect.name
            if backend == "sqlite":
                query = "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            elif backend == "postgresql":
                query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            else:  # MariaDB has no partial indexes: the same ones, over every row
                query = ("SELECT DISTINCT index_name, '' FROM information_schema.statistics "
                         "WHERE table_schema = DATABASE()")
            rows: list[Any] = list(tx.execute(text(query)))
        made = {str(name): str(sql) for name, sql in rows}
        for index, condition in wanted.items():
            assert index in made
            if backend != "mysql":
                assert " WHERE " in made[index].upper(), made[index]
                assert condition in made[index], made[index]


class TestUrls:
    @pytest.mark.parametrize(("given", "driver"), [("postgresql://u@h:5432/db", "postgresql+psycopg"),
                                                   ("postgres://u@h/db", "postgresql+psycopg"),
                                                   ("POSTGRESQL://u@h/db", "postgresql+psycopg")])
    def test_postgresql_means_psycopg_3(self, given: str, driver: str) -> None:
        db = Database(given)  # no connection is made until the first transaction
        try:
            assert db.engine.url.drivername == driver
        finally:
            db.dispose()

    def test_a_url_no_backend_takes_is_refused_naming_the_setting(self) -> None:
        with pytest.raises(ConfigError, match=r"TREND_DATABASE_URL.*expected sqlite:///PATH or postgresql://"):
            Database("oracle://u@h/db")

    def test_in_memory_sqlite_is_refused_with_a_reason(self) -> None:
        with pytest.raises(StorageError, match="in-memory"):
            Database("sqlite://")


class TestFairTurns:
    def test_a_writer_waits_one_turn_not_the_whole_backlog(self, tmp_path: Path) -> None:
        """Regression: a run's back-to-back bucket transactions starved ingest for the whole catch-up."""
        db = Database(f"sqlite:///{tmp_path / 'fair.db'}")
        db.ensure_schema()
        stop = threading.Event()

        def busy_runner() -> None:
            while not stop.is_set():
                with db.write() as conn:
                    conn.execute(text("INSERT INTO trend_dimensions VALUES ('e', :s)"), {"s": str(time.time())})
                    time.sleep(0.02)  # a bucket's worth of work, holding the write lock

        runner = threading.Thread(target=busy_runner)
        runner.start()
        try:
            time.sleep(0.1)
            waits = []
            for _ in range(5):
                began = time.monotonic()
                with db.write() as conn:
                    conn.execute(text("SELECT 1"))
                waits.append(time.monotonic() - began)
        finally:
            stop.set()
            runner.join(10)
            db.dispose()
        assert max(waits) < 0.2, waits


class TestOtherProcessWriters:
    """A writer of another process has its own turns; only SQLite's lock orders it against ours."""

    def test_a_writer_gets_in_a_gap_that_sqlites_back_off_sleeps_through(self, tmp_path: Path) -> None:
        """Regression: SQLite's busy handler tries at 1, 3, 8, 18, 33, 53 … ms, so a writer that came
        while another process held the lock missed a 10 ms gap at 40 ms and waited for the next one."""
        # A busy machine may not run the writer's thread within the 10 ms gap: up to three tries. A
        # writer that polls like SQLite's handler misses the gap every time, so one is proof enough.
        waits: list[float] = []
        while len(waits) < 3 and not any(wait < 1.0 for wait in waits):
            waits.append(self._wait_through_a_gap(tmp_path / f"gap{len(waits)}.db"))
        assert min(waits) < 1.0, waits

    @staticmethod
    def _wait_through_a_gap(path: Path) -> float:
        """How long a write waited while another connection held the lock, let go for 10 ms after 40
        ms, and took it again for 1.5 s."""
        db = Database(f"sqlite:///{path}")
        db.ensure_schema()
        held = threading.Event()

        def other_process() -> None:
            other = sqlite3.connect(path, isolation_level=None, timeout=10)
            other.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(0.040)
            other.execute("COMMIT")
            time.sleep(0.010)
            other.execute("BEGIN IMMEDIATE")
            time.sleep(1.5)
            other.execute("COMMIT")
            other.close()

        holder = threading.Thread(target=other_process)
        holder.start()
        try:
            held.wait(5)
            began = time.monotonic()
            with db.write() as conn:
                conn.execute(text("INSERT INTO trend_dimensions VALUES ('e', 'in the gap')"))
            waited = time.monotonic() - began
        finally:
            holder.join(10)
            db.dispose()
        return waited

    def test_a_writer_that_never_gets_the_lock_fails_after_the_busy_timeout(self, tmp_path: Path) -> None:
        path = tmp_path / "timeout.db"
        db = Database(f"sqlite:///{path}", options={"sqlite_busy_timeout_ms": 200})
        db.ensure_schema()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            began = time.monotonic()
            with pytest.raises(StorageError, match="database is locked"), db.write() as conn:
                conn.execute(text("INSERT INTO trend_dimensions VALUES ('e', 'never')"))
            waited = time.monotonic() - began
        finally:
            other.execute("ROLLBACK")
            other.close()
        try:
            # The connection keeps its busy timeout for everything else, and works again.
            with db.read() as conn:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200
            with db.write() as conn:
                conn.execute(text("INSERT INTO trend_dimensions VALUES ('e', 'later')"))
            with db.read() as conn:
                assert conn.execute(text("SELECT segment FROM trend_dimensions WHERE event = 'e'")).scalars().all() == [
                    "later"]
        finally:
            db.dispose()
        assert 0.2 <= waited < 5, waited


class TestCheckpoints:
    """No commit copies SQLite's log into the database file; a thread of the database does."""

    @staticmethod
    def _write_megabytes(db: Database, megabytes: int) -> None:
        for _ in range(megabytes):
            with db.write() as conn:
                conn.execute(text("INSERT INTO ballast VALUES (randomblob(1048576))"))

    @staticmethod
    def _until_file_holds(path: Path, size: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.stat().st_size >= size:
                return True
            time.sleep(0.05)
        return False

    def test_the_log_reaches_the_database_file_without_a_commit_paying_for_it(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(checkpoints, "IDLE_S", 0.5)
        path = tmp_path / "wal.db"
        db = Database(f"sqlite:///{path}")
        try:
            with db.write() as conn:
                conn.execute(text("CREATE TABLE ballast (b BLOB)"))
            with db.read() as conn:
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
            self._write_megabytes(db, 8)  # 2,000 pages: twice SQLite's own checkpoint threshold
            assert self._until_file_holds(path, 8 << 20), path.stat().st_size
            # The thread ends when writes stop, and the next write starts another.
            time.sleep(1.0)
            self._write_megabytes(db, 8)
            assert self._until_file_holds(path, 16 << 20), path.stat().st_size
        finally:
            db.dispose()
