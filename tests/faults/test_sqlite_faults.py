"""SQLite under pressure: a long reader, a writer from another process, and a full disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import T0
from tests.reference import Reference, assert_levels_equal, stored_events
from trend.api.app import create_app
from trend.clock import FakeClock
from trend.errors import StorageError
from trend.model import MINUTE_MS
from trend.service import Trend

pytestmark = [pytest.mark.faults, pytest.mark.slow]

HOLD = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA busy_timeout=10000")
con.execute(sys.argv[2])  # BEGIN IMMEDIATE (a writer) or BEGIN plus a SELECT (a reader)
con.execute("SELECT count(*) FROM fact_events").fetchone()
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
con.execute("COMMIT")
"""


def _hold(path: Path, begin: str, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), begin, str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "holding"
    return process


def _events(n: int, minute_offset: int = 10, prefix: str = "e") -> list[dict[str, object]]:
    return [{"event": "search", "key": f"k{i % 5}", "event_id": f"{prefix}{i}",
             "ts": (T0 - minute_offset * MINUTE_MS + i) / 1000} for i in range(n)]


@pytest.fixture
def sqlite_trend(tmp_path: Path) -> Iterator[tuple[Trend, Path]]:
    path = tmp_path / "busy.db"
    trend = Trend(database_url=f"sqlite:///{path}", clock=FakeClock(T0), worker_enabled=False,
                  sqlite_busy_timeout_ms=5_000)
    trend.db.ensure_schema()
    yield trend, path
    trend.close()


class TestLocked:
    def test_a_long_reader_blocks_neither_ingest_nor_runs(self, sqlite_trend: tuple[Trend, Path]) -> None:
        trend, path = sqlite_trend
        reader = _hold(path, "BEGIN", 3)
        began = time.monotonic()
        assert trend.ingest(_events(500)).accepted == 500
        assert trend.rollup()[0].outcome == "ran"
        assert time.monotonic() - began < 2  # WAL: readers never wait for writers, nor writers for readers
        reader.communicate(timeout=10)
        assert_levels_equal(trend, stored_events(trend), T0)

    def test_a_writer_in_another_process_makes_ingest_wait_not_fail(self, sqlite_trend: tuple[Trend, Path]) -> None:
        trend, path = sqlite_trend
        writer = _hold(path, "BEGIN IMMEDIATE", 1.5)
        began = time.monotonic()
        assert trend.ingest(_events(300)).accepted == 300
        assert time.monotonic() - began >= 1.0
        assert trend.rollup()[0].outcome == "ran"
        writer.communicate(timeout=10)
        assert len(stored_events(trend)) == 300

    def test_locked_past_the_timeout_is_a_clean_503_that_stores_nothing(self, tmp_path: Path) -> None:
        path = tmp_path / "locked.db"
        trend = Trend(database_url=f"sqlite:///{path}", clock=FakeClock(T0), worker_enabled=False,
                      sqlite_busy_timeout_ms=200)
        trend.db.ensure_schema()
        writer = _hold(path, "BEGIN IMMEDIATE", 2)
        with TestClient(create_app(trend=trend)) as client:
            response = client.post("/v1/events", json=_events(50))
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert "Traceback" not in response.text
            [report] = trend.rollup("1m")
            assert report.outcome in ("failed", "skipped_no_data")
            writer.communicate(timeout=10)
            assert client.post("/v1/events", json=_events(50)).status_code == 202
        assert len(stored_events(trend)) == 50
        trend.close()


class TestDiskFull:
    def test_a_full_disk_refuses_cleanly_and_recovers(self, tmp_path: Path) -> None:
        """A real 4 MB tmpfs. Batches that fail store nothing; acknowledged ones survive; freeing space heals."""
        mount = tmp_path / "tiny"
        mount.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
        if result.returncode != 0:
            pytest.fail(f"this test needs to mount a small tmpfs (run as root): {result.stderr.decode().strip()}")
        try:
            self._fill_and_recover(mount)
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)

    @staticmethod
    def _fill_and_recover(mount: Path) -> None:
        trend = Trend(database_url=f"sqlite:///{mount / 'full.db'}", clock=FakeClock(T0), worker_enabled=False)
        reference = Reference()
        filler = mount / "filler"
        with filler.open("wb") as handle:  # leave about 1 MB for the database
            handle.write(os.urandom(2_900_000))
        full_at = None
        with TestClient(create_app(trend=trend)) as client:
            for batch in range(200):
                events = _events(200, minute_offset=1 + batch % 50, prefix=f"b{batch}-")
                response = client.post("/v1/events", json=events)
                if response.status_code == 202:
                    for e in events:
                        reference.add(round(float(str(e["ts"])) * 1000), "search", str(e["key"]),
                                      event_id=str(e["event_id"]))
                    continue
                assert response.status_code == 503, response.text
                full_at = batch
                break
            assert full_at is not None, "the disk never filled"
            with pytest.raises(StorageError):
                trend.ingest(_events(5000, prefix="more-"))
            stored = {e["event_id"] for e in stored_events(trend)}
            assert len(stored) == len(reference.events)
            assert not any(i.startswith(f"b{full_at}-") for i in stored)  # the refused batch left nothing
            filler.unlink()
            assert client.post("/v1/events", json=_events(200, prefix="after-")).status_code == 202
        trend.rollup()
        assert_levels_equal(trend, stored_events(trend), T0)
        trend.close()
