"""The run shell every job shares: outcomes, the run record and its lease, on every backend."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest

from tests.conftest import T0, TrendFactory
from tests.reference import markers
from trend.clock import FakeClock
from trend.model import LEVELS_BY_NAME, MINUTE_MS
from trend.rollup.runner import LevelRunner
from trend.rollup.shell import HOST, LEASE_MS, OUTCOMES
from trend.service import Trend
from trend.storage.write.runs import RunRecord, all_runs, record_run

L1M = LEVELS_BY_NAME["1m"]


def _backlog(trend: Trend, minutes: int) -> None:
    trend.ingest([{"event": "search", "key": "k", "ts": (T0 - (m + 2) * MINUTE_MS) / 1000} for m in range(minutes)])


def _running_record(trend: Trend, runner: str, heartbeat: int) -> None:
    with trend.db.write() as tx:
        record_run(tx, RunRecord("agg_1m", runner, heartbeat, None, "running", 0, 0, None))
        tx.exec_driver_sql(f"UPDATE job_runs SET heartbeat_at = {heartbeat} WHERE outcome = 'running'")


def _outcomes(trend: Trend) -> list[tuple[str, str]]:
    with trend.db.read() as tx:
        return [(run.runner, run.outcome) for run in all_runs(tx, "agg_1m")]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class TestInterrupted:
    def test_a_stop_with_work_left_is_interrupted_and_keeps_the_rest_marked(self, trend: Trend,
                                                                             clock: FakeClock) -> None:
        """SIGTERM during a catch-up: the run stops after its current bucket and says so."""
        _backlog(trend, 5)
        asked = itertools.count()
        runner = LevelRunner(trend.db, clock, L1M, should_stop=lambda: next(asked) >= 2)
        report = runner.run()
        assert (report.outcome, report.buckets) == ("interrupted", 2)
        assert len([m for m in markers(trend) if m[0] == "1m"]) == 3
        assert _outcomes(trend)[-1][1] == "interrupted"

    def test_a_stop_after_the_last_bucket_is_a_plain_run(self, trend: Trend, clock: FakeClock) -> None:
        _backlog(trend, 2)
        asked = itertools.count()
        report = LevelRunner(trend.db, clock, L1M, should_stop=lambda: next(asked) >= 2).run()
        assert (report.outcome, report.buckets) == ("ran", 2)


class TestAbandoned:
    def test_a_record_left_by_a_dead_process_on_this_host_is_closed_at_once(self, trend: Trend,
                                                                            clock: FakeClock) -> None:
        """Its pid is gone: no lease needs to run out before the record is closed."""
        runner = f"{HOST}:{_dead_pid()}"
        _running_record(trend, runner, heartbeat=clock.now_ms())
        _backlog(trend, 1)
        assert trend.rollup("1m")[0].outcome == "ran"
        assert (runner, "abandoned") in _outcomes(trend)

    def test_a_record_of_another_host_is_closed_only_after_its_lease(self, trend: Trend, clock: FakeClock) -> None:
        """A live run on another host must never be closed: only a heartbeat older than the lease counts."""
        _running_record(trend, "elsewhere:1234", heartbeat=clock.now_ms() - LEASE_MS + 60_000)
        _backlog(trend, 1)
        trend.rollup("1m")
        assert ("elsewhere:1234", "running") in _outcomes(trend)
        clock.advance(61_000)
        _backlog(trend, 1)
        trend.rollup("1m")
        assert ("elsewhere:1234", "abandoned") in _outcomes(trend)


class TestSkippedClaimed:
    @pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
    def test_sqlite_skips_a_level_a_live_process_is_running(self, trend: Trend, clock: FakeClock) -> None:
        """SQLite serializes writers: a second process's run would only queue, so it skips at once."""
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            _running_record(trend, f"{HOST}:{holder.pid}", heartbeat=clock.now_ms())
            _backlog(trend, 3)
            report = trend.rollup("1m")[0]
            assert (report.outcome, report.buckets) == ("skipped_claimed", 0)
            assert len(markers(trend)) == 3
            deadline = time.monotonic() + 10  # recorded off the job's thread, so the job never waits
            while ("skipped_claimed" not in {o for _, o in _outcomes(trend)}) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert "skipped_claimed" in {o for _, o in _outcomes(trend)}
        finally:
            holder.kill()
            holder.wait()
        report = trend.rollup("1m")[0]
        assert (report.outcome, report.buckets) == ("ran", 3)


class TestOutcomes:
    def test_every_outcome_has_a_metrics_series_from_the_start(self, make_trend: TrendFactory) -> None:
        text = make_trend().metrics.render().decode()
        for job in ("agg_1m", "agg_5m", "agg_1h", "retention"):
            for outcome in OUTCOMES:
                assert f'trend_job_runs_total{{outcome="{outcome}",trend_job="{job}"}} 0.0' in text
