"""The database handle: schema versions, transactions, and fair turns for SQLite writers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import TrendFactory
from trend.errors import StorageError
from trend.storage.engine import Database, normalize_url
from trend.storage.schema import SCHEMA_VERSION


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


class TestUrls:
    def test_postgresql_means_psycopg_3(self) -> None:
        assert normalize_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
        assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
        assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"

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
