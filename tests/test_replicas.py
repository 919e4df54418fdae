"""Many processes on one database (docs/architecture.md, "Why it is correct")."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import PROTOCOL_BACKENDS, T0, TrendFactory
from tests.deadlines import scaled
from tests.proc_tasks import batch
from tests.reference import assert_levels_equal, closed_markers, markers, stored_events, table_rows
from tests.servers import EVERY_SECOND, Process, environment
from trend.clock import FakeClock, SystemClock
from trend.model import LEVELS_BY_NAME, MINUTE_MS
from trend.storage.shared.markers import claim_next, mark, release
from trend.storage.write.events import insert_events
from trend.storage.write.rollups import recompute
from trend.storage.write.runs import all_runs
from trend.validation import EventValidator

pytestmark = pytest.mark.slow
L1M = LEVELS_BY_NAME["1m"]
@pytest.mark.parametrize("backend", PROTOCOL_BACKENDS, indirect=True)
class TestManyReplicas:
    def test_three_workers_and_two_ingesters_share_one_database(self, make_trend: TrendFactory,
                                                                database_url: str) -> None:
        """The workers alone bring every level to the truth (the test runs no level itself), and the run
        records show the work spread across processes."""
        trend = make_trend(clock=SystemClock())
        trend.db.ensure_schema()
        worker_env = environment(database_url, **EVERY_SECOND)
        workers = [Process([sys.executable, "-m", "trend", "worker"], worker_env) for _ in range(3)]
        ingesters = [subprocess.Popen([sys.executable, "-m", "tests.proc_tasks", "ingest", database_url, str(seed),
                                       "60", "0.1"], env=environment(database_url)) for seed in (21, 22)]
        try:
            for process in ingesters:
                assert process.wait(scaled(120)) == 0
            deadline = time.monotonic() + scaled(60)
            now = int(time.time() * 1000)
            while closed_markers(trend, now) and time.monotonic() < deadline:
                time.sleep(0.2)
            converged = not closed_markers(trend, now)
        finally:
            for process in ingesters:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            errors = [process.stop() for process in workers]
        assert [process.process.returncode for process in workers] == [0, 0, 0]
        assert all("Traceback" not in error for error in errors), errors
        assert converged, "the workers left closed buckets dirty"
        assert_levels_equal(trend, stored_events(trend), now)
        with trend.db.read() as conn:
            runs = [run for run in all_runs(conn) if run.outcome == "ran" and run.buckets > 0]
        assert len({run.runner for run in runs}) >= 2, "every bucket was processed by one process"
        sent = []
        for seed in (21, 22):
            rng = random.Random(seed)
            for number in range(60):
                sent.extend(batch(rng, 0.0, f"p{seed}", 50, number * 50))
        ids = [e.get("event_id") for e in sent]
        assert len(stored_events(trend)) == ids.count(None) + len({i for i in ids if i is not None})


class TestIngestVersusRun:
    def test_an_ingest_blocked_by_a_run_keeps_its_marker(self, make_trend: TrendFactory, clock: FakeClock) -> None:
        """The run holds the marker; the ingest into that minute waits, then marks it again after the run commits."""
        trend = make_trend()
        minute = T0 - 10 * MINUTE_MS
        trend.ingest([{"event": "search", "key": "k", "ts": (minute + 1_000) / 1000}])
        db = trend.db
        done = threading.Event()

        def late_ingest() -> None:
            trend.ingest([{"event": "search", "key": "k", "ts": (minute + 2_000) / 1000}])
            done.set()

        with db.write() as run:  # what LevelRunner does for one bucket, with the ingest forced in between
            claimed = claim_next(run, "1m", -1, L1M.closed_cutoff(clock.now_ms()))
            assert claimed is not None
            bucket, version = claimed
            assert recompute(run, L1M, bucket).events == 1
            parent = run.levels.parent_bucket(L1M, bucket)
            assert parent is not None
            mark(run, parent[0].name, [parent[1]])
            writer = threading.Thread(target=late_ingest)
            writer.start()
            assert not done.wait(0.5), "the ingest should wait for the run's transaction"
            release(run, "1m", bucket, version)
        writer.join(30)
        assert done.is_set()
        assert ("1m", minute) in markers(trend)
        trend.rollup()
        assert table_rows(trend, L1M)[(minute, "search", "", "k")][0] == 2
        assert_levels_equal(trend, stored_events(trend), clock.now_ms())

    @pytest.mark.parametrize("backend", ["postgres"], indirect=True)
    def test_a_run_skips_a_bucket_an_open_ingest_has_locked(self, make_trend: TrendFactory,
                                                             clock: FakeClock) -> None:
        """PostgreSQL: SKIP LOCKED passes over the marker an uncommitted ingest holds; the next run counts it."""
        trend = make_trend()
        minute = T0 - 10 * MINUTE_MS
        trend.ingest([{"event": "search", "key": "k", "ts": (minute + 1_000) / 1000}])
        validator = EventValidator(trend.settings.accepted_lateness)
        row = validator.validate({"event": "search", "key": "k", "ts": (minute + 2_000) / 1000}, 0, clock.now_ms())
        with trend.db.write() as ingest:
            insert_events(ingest, [row], clock.now_ms())  # type: ignore[list-item]  # a valid EventRow
            [report] = trend.rollup("1m")
            assert (report.outcome, report.buckets) == ("skipped_claimed", 0)
        assert ("1m", minute) in markers(trend)
        trend.rollup()
        assert table_rows(trend, L1M)[(minute, "search", "", "k")][0] == 2
