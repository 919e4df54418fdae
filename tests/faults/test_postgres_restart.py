"""PostgreSQL stops in the middle of runs and comes back: the worker recovers by itself."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TrendFactory
from tests.reference import assert_levels_equal, closed_markers, stored_events
from trend.clock import SystemClock
from trend.model import MINUTE_MS
from trend.storage.runs import all_runs

pytestmark = [pytest.mark.faults, pytest.mark.slow]
EVERY_SECOND = {"agg_1m": {"second": "*"}, "agg_5m": {"minute": "*", "second": "*"},
                "agg_1h": {"minute": "*", "second": "*"}, "retention": {"enabled": False}}


def _cluster(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True,
                   capture_output=True, timeout=60)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestDatabaseRestart:
    def test_the_worker_survives_a_restart_and_catches_up(self, make_trend: TrendFactory,
                                                          trend_logs: pytest.LogCaptureFixture) -> None:
        if shutil.which("pg_ctlcluster") is None:
            pytest.fail("this test restarts the local PostgreSQL cluster and needs pg_ctlcluster")
        trend = make_trend(clock=SystemClock(), worker_enabled=True, jobs=EVERY_SECOND)
        now = int(time.time() * 1000)
        start = now - now % MINUTE_MS - 400 * MINUTE_MS
        trend.ingest([{"event": "search", "key": f"k{n % 30}", "ts": (start + m * MINUTE_MS + n * 300) / 1000}
                      for m in range(400) for n in range(150)])
        trend.start_worker()
        try:
            time.sleep(1.5)  # runs are under way
            _cluster("stop")
            time.sleep(2)  # runs fail meanwhile, and are recorded nowhere: the database is down
        finally:
            _cluster("start")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if not closed_markers(trend, now):
                    break
            except Exception:
                pass
            time.sleep(0.5)
        assert trend.worker.running
        trend.stop_worker()
        assert closed_markers(trend, now) == []
        assert_levels_equal(trend, stored_events(trend), now)
        with trend.db.read() as conn:
            outcomes = {run.outcome for run in all_runs(conn)}
        assert "ran" in outcomes
        failures = [r.getMessage() for r in trend_logs.records if r.levelname == "ERROR"]
        assert any("aggregation failed" in line for line in failures), "no run met the stopped database"
        assert not any("Traceback" in line for line in failures)
