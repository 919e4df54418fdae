"""The worker: the seed's cron times, per-job settings, a real scheduler run, listeners."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import T0, TrendFactory
from trend.clock import FakeClock
from trend.config import load_settings
from trend.model import LEVELS
from trend.service import Trend
from trend.storage.write.runs import RunRecord, all_runs
from trend.worker.scheduler import trigger_for


def _fire_times(job_id: str, start: datetime, count: int, **env: str) -> list[datetime]:
    trigger = trigger_for(load_settings(**env).job(job_id))
    times: list[datetime] = []
    previous = None
    now = start
    while len(times) < count:
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        times.append(fire.astimezone(UTC))
        previous, now = fire, fire + timedelta(microseconds=1)
    return times


START = datetime(2025, 11, 13, 6, 51, 0, tzinfo=UTC)


class TestCronTimes:
    def test_1m_fires_every_minute_at_second_5(self) -> None:
        assert _fire_times("agg_1m", START, 3) == [START.replace(second=5) + timedelta(minutes=n) for n in range(3)]

    def test_5m_fires_every_five_minutes_at_second_15(self) -> None:
        expected = [datetime(2025, 11, 13, 6, m, 15, tzinfo=UTC) for m in (55,)] + [
            datetime(2025, 11, 13, 7, m, 15, tzinfo=UTC) for m in (0, 5)]
        assert _fire_times("agg_5m", START, 3) == expected

    def test_1h_fires_every_hour_at_minute_1(self) -> None:
        assert _fire_times("agg_1h", START, 2) == [datetime(2025, 11, 13, h, 1, 0, tzinfo=UTC) for h in (7, 8)]

    def test_the_seeds_options_change_what_fires(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """minute='*/10' and hour='0-6', set through TREND_JOBS__…, as the seed's options did."""
        monkeypatch.setenv("TREND_JOBS__AGG_5M__MINUTE", "*/10")
        monkeypatch.setenv("TREND_JOBS__AGG_1H__HOUR", "0-6")
        five = _fire_times("agg_5m", START, 2)
        assert [t.minute for t in five] == [0, 10]
        hourly = _fire_times("agg_1h", START, 3)
        assert [(t.day, t.hour) for t in hourly] == [(14, 0), (14, 1), (14, 2)]


class TestWorker:
    def test_the_scheduler_uses_the_seeds_pool_and_job_defaults(self, trend: Trend) -> None:
        trend.start_worker()
        try:
            scheduler = trend.worker._scheduler
            assert scheduler is not None
            assert scheduler.timezone == UTC
            jobs = {job.id: job for job in scheduler.get_jobs()}
            assert set(jobs) == {*(level.job for level in LEVELS), "retention", "alerts"}
            for job in jobs.values():
                assert (job.coalesce, job.max_instances) == (True, 1)
                assert job.misfire_grace_time >= 10
            assert scheduler._executors["default"]._pool._max_workers == 2
            # Webhooks wait on other servers: alerts run on a thread of their own, never in the rollups' pool.
            assert jobs["alerts"].executor == "alerts"
            assert {job.executor for job_id, job in jobs.items() if job_id != "alerts"} == {"default"}
        finally:
            trend.stop_worker()

    def test_a_disabled_job_is_not_scheduled(self, make_trend: TrendFactory, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_JOBS__AGG_5M__ENABLED", "false")
        trend = make_trend()
        trend.start_worker()
        try:
            assert {info.job: info.enabled for info in trend.worker.info()} == {
                **{level.job: level.job != "agg_5m" for level in LEVELS}, "retention": True, "alerts": True}
            assert trend.worker._scheduler is not None
            assert trend.worker._scheduler.get_job("agg_5m") is None
        finally:
            trend.stop_worker()

    def test_a_scheduled_run_rolls_up_on_the_worker_pool(self, trend: Trend, clock: FakeClock) -> None:
        """A real BackgroundScheduler runs the job; the test waits a bounded few seconds, never a minute."""
        trend.ingest([{"event": "search", "key": "k", "ts": (T0 - 120_000) / 1000}])
        trend.start_worker()
        try:
            assert trend.worker.trigger("agg_1m")
            deadline = time.monotonic() + 10
            runs: list[RunRecord] = []
            while time.monotonic() < deadline and not runs:
                with trend.db.read() as conn:
                    runs = [r for r in all_runs(conn, "agg_1m") if r.finished is not None]
                time.sleep(0.05)
        finally:
            trend.stop_worker()
        assert [(r.outcome, r.buckets) for r in runs] == [("ran", 1)]

    def test_runs_by_hand_still_work_after_the_worker_stopped(self, trend: Trend, clock: FakeClock) -> None:
        """Regression: the stop request once outlived the worker, and later rollups silently did nothing."""
        trend.start_worker()
        trend.stop_worker()
        trend.ingest([{"event": "search", "key": "k", "ts": (T0 - 120_000) / 1000}])
        [report] = trend.rollup("1m")
        assert (report.outcome, report.buckets) == ("ran", 1)

    def test_stop_is_idempotent_and_the_worker_restarts(self, trend: Trend) -> None:
        trend.start_worker()
        trend.stop_worker()
        trend.stop_worker()
        assert not trend.worker.running
        trend.start_worker()
        assert trend.worker.running
        trend.stop_worker()
