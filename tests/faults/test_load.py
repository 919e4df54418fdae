"""A short version of bench/load.py: concurrent ingest and reads with the worker running lose nothing."""

from __future__ import annotations

import os
import time

import pytest
from bench.load import run_load

from tests.conftest import TrendFactory
from tests.reference import assert_levels_equal, settle, stored_events
from tests.servers import EVERY_SECOND, Served
from trend.clock import SystemClock

pytestmark = [pytest.mark.faults, pytest.mark.slow]
SECONDS = float(os.environ.get("TREND_LOAD_SECONDS", "8"))


class TestLoad:
    def test_every_acknowledged_event_is_stored_once_and_rolled_up(self, make_trend: TrendFactory,
                                                                   database_url: str) -> None:
        trend = make_trend(clock=SystemClock())
        trend.db.ensure_schema()
        server = Served(database_url, **EVERY_SECOND)
        try:
            report = run_load(server.url, SECONDS, writers=3, readers=2)
        finally:
            output = server.stop()
        assert report.errors == 0
        assert report.acked_events > 0
        assert set(report.latencies) >= {"POST /v1/events", "GET /v1/top", "GET /v1/jobs"}
        now = int(time.time() * 1000)
        settle(trend, now)
        stored = stored_events(trend)
        assert len(stored) == report.acked_events
        assert_levels_equal(trend, stored, now)
        assert "Traceback" not in output
