"""``trend ingest`` says exactly what it stored when it stops, and ``--resume`` goes on from there.

The events in these files carry no event_id, so nothing but the recorded progress keeps a resumed
ingest from counting a line twice. The processes are real: killed with SIGKILL, or cut off from
PostgreSQL by terminating their backend.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from tests.conftest import BACKENDS, POSTGRES_URL
from tests.reference import stored_events
from tests.servers import environment
from trend.file_ingest import CHUNK_LINES
from trend.service import Trend
from trend.storage.shared.schema import ingest_progress

pytestmark = pytest.mark.slow
LINES = 12 * CHUNK_LINES


def _write(path: Path, lines: int = LINES) -> Counter[tuple[str, int]]:
    """A file of events without event_ids, each (key, ts) once; returns them."""
    now = int(time.time())
    events = [(f"k{n % 997}", now - 3_600 + n % 3_000 + n / 100_000) for n in range(lines)]
    path.write_text("".join(json.dumps({"event": "search", "key": key, "ts": ts}) + "\n" for key, ts in events))
    return Counter((key, round(ts * 1000)) for key, ts in events)


def _stored(url: str) -> Counter[tuple[str, int]]:
    with Trend(database_url=url, worker_enabled=False) as trend:
        return Counter((e["key"], e["ts"]) for e in stored_events(trend))


def _progress_line(url: str) -> int:
    with Trend(database_url=url, worker_enabled=False) as trend, trend.db.read() as tx:
        return int(tx.execute(select(ingest_progress.c.line)).scalar() or 0)


def _ingest(url: str, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "trend", "ingest", "--json", *arguments], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(url))


def _once_past(url: str, process: subprocess.Popen[str], line: int) -> None:
    """Wait until the ingest has stored past ``line`` and is still going."""
    deadline = time.monotonic() + 60
    while _progress_line(url) <= line:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the ingest made no progress"
        time.sleep(0.02)


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pid: int, seconds: float) -> bool:
    """Whether the process has ended (a zombie left to a parent that does not reap counts as ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _waiting_backend(application: str) -> int:
    """The backend of ``application`` once it waits for a lock."""
    deadline = time.monotonic() + 60
    with psycopg.connect(POSTGRES_URL or "", autocommit=True) as conn:
        while time.monotonic() < deadline:
            found = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                 "AND wait_event_type = 'Lock'", (application,)).fetchone()
            if found is not None:
                return int(found[0])
            time.sleep(0.02)
    raise AssertionError(f"{application} never waited for the lock")


def _resume(url: str, path: Path) -> dict[str, int]:
    done = _ingest(url, str(path), "--resume")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    summary: dict[str, int] = json.loads(out)
    return summary


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestResume:
    def test_a_killed_ingest_resumes_after_its_last_stored_line(self, database_url: str, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        sent = _write(path)
        Trend(database_url=database_url, worker_enabled=False).close()  # the schema, before the race
        running = _ingest(database_url, str(path))
        _once_past(database_url, running, 2 * CHUNK_LINES)
        [reader] = _children(running.pid)  # the process that reads and validates the file
        running.send_signal(signal.SIGKILL)
        running.communicate(timeout=30)  # returns once no process holds its output open: the reader is gone too
        assert _gone(reader, 10)
        stored_line = _progress_line(database_url)
        assert 0 < stored_line < LINES
        assert sum(_stored(database_url).values()) == stored_line  # one event a line, exactly those stored
        summary = _resume(database_url, path)
        assert summary["resumed_after"] == stored_line
        assert summary["accepted"] == LINES - stored_line
        assert _stored(database_url) == sent

    def test_a_finished_file_is_not_ingested_again_and_another_file_is_refused(self, database_url: str,
                                                                               tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        sent = _write(path, 3 * CHUNK_LINES)
        assert _resume(database_url, path)["accepted"] == 3 * CHUNK_LINES  # nothing to resume: from the start
        assert _resume(database_url, path)["accepted"] == 0
        assert _stored(database_url) == sent
        _write(path, 100)  # another file under the same name
        refused = _ingest(database_url, str(path), "--resume")
        out, _ = refused.communicate(timeout=60)
        assert refused.returncode == 2
        assert "does not begin as the file ingested before" in json.loads(out)["error"]["message"]


class TestStopped:
    @pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
    def test_a_lost_connection_is_reported_with_exactly_what_was_stored(self, database_url: str,
                                                                        tmp_path: Path) -> None:
        """The database ends the ingest's session mid-file: the error names the lines stored, which are
        exactly those in the table, and --resume stores the rest once."""
        path = tmp_path / "events.jsonl"
        sent = _write(path)
        Trend(database_url=database_url, worker_enabled=False).close()
        running = _ingest(f"{database_url}&application_name=ingest-under-test", str(path))
        _once_past(database_url, running, 2 * CHUNK_LINES)
        # The table locked, the ingest waits inside a chunk's transaction, and its session is ended there.
        schema = database_url.partition("search_path%3D")[2].partition(",")[0]
        with psycopg.connect(POSTGRES_URL or "") as admin:
            admin.execute(f"LOCK TABLE {schema}.fact_events IN ACCESS EXCLUSIVE MODE")
            waiting = _waiting_backend("ingest-under-test")
            with psycopg.connect(POSTGRES_URL or "", autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (waiting,))
            admin.rollback()
        out, _ = running.communicate(timeout=60)
        assert running.returncode == 3
        error = json.loads(out)["error"]
        stored = sum(_stored(database_url).values())
        assert error["accepted"] == stored == error["last_line"] == _progress_line(database_url)
        assert error["resume"].endswith("--resume")
        assert _resume(database_url, path)["resumed_after"] == stored
        assert _stored(database_url) == sent
