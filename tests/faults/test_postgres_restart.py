"""PostgreSQL stops in the middle of runs and comes back: the worker recovers by itself.

The server stopped is a private cluster of this test's own (tests/clusters.py), never the shared one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.clusters import pg_ctl, private_postgres_when_tested
from tests.conftest import TrendFactory, worker_port
from tests.reference import assert_levels_equal, closed_markers, stored_events
from trend.clock import SystemClock
from trend.model import MINUTE_MS
from trend.storage.write.runs import all_runs

pytestmark = [pytest.mark.faults, pytest.mark.slow]
EVERY_SECOND = {"agg_1m": {"second": "*"}, "agg_5m": {"minute": "*", "second": "*"},
                "agg_1h": {"minute": "*", "second": "*"}, "retention": {"enabled": False}}


# A cluster and a port of this test worker's own (tests/conftest.py, worker_port).
PORT = worker_port(5440)
PRIVATE = f"trendrestart{PORT}"


@pytest.fixture
def private_url() -> Iterator[str]:
    with private_postgres_when_tested(PRIVATE, PORT) as url:
        yield url


def _cluster(action: str) -> None:
    pg_ctl(PRIVATE, action)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestDatabaseRestart:
    def test_the_worker_survives_a_restart_and_catches_up(self, make_trend: TrendFactory, private_url: str,
                                                          trend_logs: pytest.LogCaptureFixture) -> None:
        trend = make_trend(database_url=private_url, clock=SystemClock(), worker_enabled=True, jobs=EVERY_SECOND)
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
