"""Crash safety and graceful stops of the real ``trend`` processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROTOCOL_BACKENDS, TrendFactory
from tests.reference import assert_levels_equal, markers, settle, stored_events
from tests.servers import environment
from trend.clock import SystemClock
from trend.model import MINUTE_MS
from trend.storage.write.runs import all_runs

pytestmark = pytest.mark.slow
TREND = [sys.executable, "-m", "trend"]


@pytest.mark.parametrize("backend", PROTOCOL_BACKENDS, indirect=True)
class TestKilledRollup:
    def test_sigkill_in_the_middle_of_a_backlog_loses_nothing(self, make_trend: TrendFactory,
                                                              database_url: str) -> None:
        """Each bucket commits alone: a killed run leaves whole buckets and markers for the rest."""
        trend = make_trend(clock=SystemClock())
        now = int(time.time() * 1000)
        minutes = 600
        start = now - now % MINUTE_MS - minutes * MINUTE_MS
        events = [{"event": "search", "key": f"k{(m * 7 + n) % 40}", "ts": (start + m * MINUTE_MS + n * 400) / 1000}
                  for m in range(minutes) for n in range(120)]
        for offset in range(0, len(events), 20_000):
            trend.ingest(events[offset:offset + 20_000])
        backlog = len(markers(trend))
        env = environment(database_url)
        process = subprocess.Popen([*TREND, "rollup", "--level", "1m"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(markers(trend)) > backlog - 20:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        left = len(markers(trend))
        assert process.returncode == -signal.SIGKILL
        assert 0 < left < backlog, "the kill must land in the middle of the backlog"
        now = int(time.time() * 1000)
        settle(trend, now)
        assert_levels_equal(trend, stored_events(trend), now)
        with trend.db.read() as tx:
            killed = [run for run in all_runs(tx, "agg_1m") if run.runner.endswith(f":{process.pid}")]
        assert [run.outcome for run in killed] == ["abandoned"], "the next run closes the killed run's record"


class TestWorkerProcess:
    def test_sigterm_stops_the_worker_gracefully(self, database_url: str, tmp_path: Path) -> None:
        log_path = tmp_path / "worker.log"
        env = environment(database_url, TREND_LOG_LEVEL="INFO")  # the start and stop lines are INFO
        with log_path.open("w") as log:
            process = subprocess.Popen([*TREND, "worker"], env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while "worker started" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "worker started" in log_path.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
        output = log_path.read_text()
        assert "worker stopped" in output
        assert "agg_1m [hour=* minute=* second=5 UTC]" in output
        assert "Traceback" not in output
