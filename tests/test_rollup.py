"""The rollup protocol (docs/architecture.md): closed buckets only, catch-up, late events, no double counting."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from tests.conftest import PROTOCOL_BACKENDS, T0, TrendFactory
from tests.reference import Reference, assert_levels_equal, markers, table_rows
from trend.clock import FakeClock
from trend.model import HOUR_MS, LEVELS_BY_NAME, MINUTE_MS
from trend.rollup.shell import OVERLAP_WARNING, guard
from trend.service import Trend
from trend.storage.write.runs import all_runs

L1M, L5M, L1H = (LEVELS_BY_NAME[name] for name in ("1m", "5m", "1h"))

pytestmark = pytest.mark.parametrize("backend", PROTOCOL_BACKENDS, indirect=True)


def _ingest_spread(trend: Trend, reference: Reference, start: int, minutes: int, per_minute: int) -> None:
    batch = []
    for m in range(minutes):
        for n in range(per_minute):
            ts = start + m * MINUTE_MS + (n * 7919) % MINUTE_MS
            key = ["우산", "umbrella", "rain boots"][n % 3]
            reference.add(ts, "search", key, value=float(n % 4))
            batch.append({"event": "search", "key": key, "ts": ts / 1000, "value": float(n % 4)})
    trend.ingest(batch)


class TestClosedBuckets:
    def test_open_buckets_are_left_for_later(self, trend: Trend, clock: FakeClock) -> None:
        """A bucket is materialized only once bucket_end + grace has passed."""
        trend.ingest([{"event": "search", "key": "k", "ts": T0 / 1000}])
        clock.set(T0 + MINUTE_MS + 4_999)
        [r1m] = trend.rollup("1m")
        assert r1m.outcome == "skipped_no_data"
        assert table_rows(trend, L1M) == {}
        clock.set(T0 + MINUTE_MS + 5_000)
        [r1m] = trend.rollup("1m")
        assert (r1m.outcome, r1m.buckets) == ("ran", 1)
        # count, sum, min, max, events with a user, distinct users
        assert table_rows(trend, L1M) == {(T0, "search", "", "k"): (1, 1.0, 1.0, 1.0, 0, 0)}


class TestCatchUp:
    def test_three_hours_without_runs_are_caught_up_by_one_run(self, trend: Trend, clock: FakeClock) -> None:
        """Downtime only delays work: one run processes every dirty closed bucket at every level."""
        reference = Reference()
        start = T0 - 3 * HOUR_MS
        _ingest_spread(trend, reference, start, minutes=180, per_minute=5)
        clock.set(T0 + 2 * MINUTE_MS)
        reports = {r.level: r.buckets for r in trend.rollup()}
        assert (reports["1m"], reports["5m"], reports["1h"]) == (180, 36, 3)
        assert_levels_equal(trend, reference.events, clock.now_ms())
        assert len(table_rows(trend, L1H)) == 3 * 3  # three hours, three keys
        now = clock.now_ms()
        assert all(not LEVELS_BY_NAME[level].is_closed(b, now) for level, b in markers(trend))

    def test_runs_are_recorded_with_their_work(self, trend: Trend, clock: FakeClock) -> None:
        reference = Reference()
        _ingest_spread(trend, reference, T0 - 10 * MINUTE_MS, minutes=10, per_minute=3)
        clock.set(T0 + 5_000)
        trend.rollup("1m")
        trend.rollup("1m")
        with trend.db.read() as conn:
            runs = all_runs(conn, "agg_1m")
        assert [(r.outcome, r.buckets, r.rows) for r in runs] == [("ran", 10, 30), ("skipped_no_data", 0, 0)]
        assert all(r.finished is not None and r.finished >= r.started for r in runs)


class TestLateEvents:
    def test_a_late_event_is_counted_at_every_level(self, trend: Trend, clock: FakeClock) -> None:
        """An event into a bucket that was already aggregated marks it again; the next runs count it."""
        reference = Reference()
        _ingest_spread(trend, reference, T0 - 2 * HOUR_MS, minutes=60, per_minute=2)
        clock.set(T0)
        trend.rollup()
        assert_levels_equal(trend, reference.events, clock.now_ms())
        late_ts = T0 - 2 * HOUR_MS + 17 * MINUTE_MS + 3_000
        reference.add(late_ts, "search", "late-key", value=9.0)
        trend.ingest([{"event": "search", "key": "late-key", "ts": late_ts / 1000, "value": 9.0}])
        trend.rollup()
        assert_levels_equal(trend, reference.events, clock.now_ms())
        hour = late_ts - late_ts % HOUR_MS
        assert table_rows(trend, L1H)[(hour, "search", "", "late-key")] == (1, 9.0, 9.0, 9.0, 0, 0)

    def test_reruns_and_backfills_never_double_count(self, trend: Trend, clock: FakeClock) -> None:
        reference = Reference()
        _ingest_spread(trend, reference, T0 - HOUR_MS, minutes=30, per_minute=4)
        clock.set(T0)
        for _ in range(2):
            trend.rollup()
            trend.backfill(T0 - 2 * HOUR_MS, T0)
        assert_levels_equal(trend, reference.events, clock.now_ms())

    def test_a_key_that_vanished_is_removed(self, trend: Trend, clock: FakeClock) -> None:
        """Recompute replaces the bucket; rows for keys no longer in the source go away."""
        trend.ingest([{"event": "search", "key": "gone", "ts": (T0 - 10 * MINUTE_MS) / 1000}])
        trend.rollup()
        with trend.db.write() as conn:
            conn.exec_driver_sql("DELETE FROM fact_events")
        trend.backfill(T0 - 20 * MINUTE_MS, T0)
        assert table_rows(trend, L1M) == {}
        assert table_rows(trend, L5M) == {}


class TestYield:
    def test_a_catch_up_pauses_after_each_bucket_in_proportion_to_its_work(
        self, make_trend: TrendFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Scheduled runs pause (TREND_WORKER_YIELD_RATIO) to leave CPU to the app; runs a person starts
        (``Trend.rollup``, ``run_job``, the CLI and HTTP) go flat out on the same Trend."""
        pauses: list[float] = []
        monkeypatch.setattr("trend.rollup.runner.time.sleep", pauses.append)
        # On Citus batches grow while a transaction stays under its target: a busy machine must not stop that.
        monkeypatch.setattr("trend.rollup.runner._BATCH_TARGET_S", 60.0)
        trend = make_trend(worker_yield_ratio=2.0)
        _ingest_spread(trend, Reference(), T0 - 10 * MINUTE_MS, minutes=6, per_minute=3)
        report = trend.worker.jobs["agg_1m"]()
        assert not isinstance(report, list)
        assert report.buckets == 6
        # One pause per transaction: a bucket each, or several buckets each on Citus.
        if trend.db.dialect.caps.buckets_per_transaction == 1:
            assert len(pauses) == 6
        else:
            assert 1 <= len(pauses) < 6
        assert all(0 < pause < 5 for pause in pauses)
        pauses.clear()
        _ingest_spread(trend, Reference(), T0 - 30 * MINUTE_MS, minutes=3, per_minute=1)
        assert trend.rollup("1m")[0].buckets == 3
        _ingest_spread(trend, Reference(), T0 - 40 * MINUTE_MS, minutes=2, per_minute=1)
        assert trend.run_job("agg_1m")[0].buckets == 2
        assert pauses == []


class TestSkipPath:
    def test_an_empty_run_logs_the_seed_line_and_touches_no_event_table(
        self, trend: Trend, clock: FakeClock, trend_logs: pytest.LogCaptureFixture
    ) -> None:
        trend.db.ensure_schema()
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        sa_event.listen(trend.db.engine, "before_cursor_execute", record)
        try:
            [report] = trend.rollup("1m")
        finally:
            sa_event.remove(trend.db.engine, "before_cursor_execute", record)
        assert report.outcome == "skipped_no_data"
        touched = [s for s in statements if re.search(r"\b(fact_events|agg_1m|agg_5m|agg_1h)\b", s)]
        assert touched == []
        lines = [r.getMessage() for r in trend_logs.records if r.levelname == "DEBUG"]
        assert "No events for bucket 2025-11-13 06:49:00 UTC, skipping aggregation" in lines


class TestOverlap:
    def test_a_run_while_one_is_running_is_skipped_with_the_seed_warning(
        self, trend: Trend, trend_logs: pytest.LogCaptureFixture
    ) -> None:
        running = guard(trend.db, LEVELS_BY_NAME["1m"].job)
        assert running.acquire(blocking=False)  # a run of 1m is in progress in this process
        try:
            result: list[Any] = []
            thread = threading.Thread(target=lambda: result.extend(trend.rollup("1m")))
            thread.start()
            thread.join(10)
        finally:
            running.release()
        assert result[0].outcome == "skipped_running"
        assert OVERLAP_WARNING in [r.getMessage() for r in trend_logs.records if r.levelname == "WARNING"]


class TestLogLines:
    def test_single_bucket_runs_log_the_seed_lines_at_info(self, trend: Trend, clock: FakeClock,
                                                           trend_logs: pytest.LogCaptureFixture) -> None:
        trend.ingest([{"event": "search", "key": k, "ts": (T0 - 30_000) / 1000} for k in ["a", "b", "a"]])
        clock.set(T0 + 5_000)
        trend.rollup("1m")
        info = [r.getMessage() for r in trend_logs.records if r.levelname == "INFO"]
        assert "Starting 1m aggregation for bucket: 2025-11-13 06:50:00 UTC (3 events)" in info
        assert any(re.fullmatch(r"1m aggregation completed: 2 rows in \d+\.\d\ds", line) for line in info)

    def test_catch_up_logs_a_summary_at_info_and_buckets_at_debug(self, trend: Trend, clock: FakeClock,
                                                                  trend_logs: pytest.LogCaptureFixture) -> None:
        _ingest_spread(trend, Reference(), T0 - 5 * MINUTE_MS, minutes=5, per_minute=1)
        clock.set(T0 + 5_000)
        trend.rollup("1m")
        info = [r.getMessage() for r in trend_logs.records if r.levelname == "INFO"]
        debug = [r.getMessage() for r in trend_logs.records if r.levelname == "DEBUG"]
        assert info[0] == ("Starting 1m aggregation catch-up: 5 buckets from 2025-11-13 06:46:00 UTC "
                           "to 2025-11-13 06:50:00 UTC")
        assert re.fullmatch(r"1m aggregation completed: 5 rows in \d+\.\d\ds \(5 buckets\)", info[1])
        assert sum(line.startswith("Starting 1m aggregation for bucket") for line in debug) == 5
