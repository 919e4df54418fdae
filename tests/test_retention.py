"""Retention: old rows go in small steps, never from under a dirty parent, and late data still counts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import PROTOCOL_BACKENDS, T0, TrendFactory
from tests.reference import Reference, group_events, markers, stored_events, table_rows
from trend.clock import FakeClock
from trend.model import HOUR_MS, LEVELS_BY_NAME, MINUTE_MS
from trend.service import Trend

L1M, L5M, L1H = (LEVELS_BY_NAME[name] for name in ("1m", "5m", "1h"))
SHORT = {"accepted_lateness": "1h", "retention": {"raw": "2h", "1m": "2h", "5m": "3h", "1h": "30d"}}

pytestmark = pytest.mark.parametrize("backend", PROTOCOL_BACKENDS, indirect=True)


def _hourly_history(trend_ingest: Callable[[list[dict[str, object]]], object], clock: FakeClock,
                    reference: Reference, hours: int) -> None:
    """Traffic arriving live, hour by hour, with the jobs keeping up."""
    start = T0 - T0 % HOUR_MS
    for hour in range(hours):
        clock.set(start + (hour + 1) * HOUR_MS)
        batch = []
        for n in range(30):
            ts = start + hour * HOUR_MS + n * 2 * MINUTE_MS + 1_000
            key = ["우산", "boots", "coat"][n % 3]
            reference.add(ts, "search", key)
            batch.append({"event": "search", "key": key, "ts": ts / 1000})
        trend_ingest(batch)


class TestRetention:
    def test_old_rows_go_and_parents_stay_exact(self, make_trend: TrendFactory, clock: FakeClock) -> None:
        trend = make_trend(**SHORT)
        reference = Reference()
        _hourly_history(trend.ingest, clock, reference, hours=6)
        clock.advance(2 * MINUTE_MS)
        trend.rollup()
        [report] = trend.run_job("retention")
        assert report.outcome == "ran"
        now = clock.now_ms()
        assert min(e["ts"] for e in stored_events(trend)) >= now - 2 * HOUR_MS - MINUTE_MS
        assert min(b for b, *_ in table_rows(trend, L1M)) >= now - 2 * HOUR_MS - L5M.width
        assert min(b for b, *_ in table_rows(trend, L5M)) >= now - 3 * HOUR_MS - L1H.width
        # Every hour is still exact, though its raw events and 1m rows are gone.
        assert table_rows(trend, L1H) == {g: m for g, m in group_events(reference.events, L1H).items()
                                          if L1H.is_closed(g[0], now)}

    def test_rows_under_a_dirty_parent_are_kept_until_it_is_clean(self, make_trend: TrendFactory,
                                                                  clock: FakeClock) -> None:
        trend = make_trend()
        trend.ingest([{"event": "search", "key": "k", "ts": (T0 - 30 * MINUTE_MS) / 1000}])
        trend.rollup("1m")  # the 5m parent is marked, not yet recomputed
        minute = T0 - 30 * MINUTE_MS
        assert ("5m", minute - minute % (5 * MINUTE_MS)) in markers(trend)
        clock.advance(8 * 24 * HOUR_MS)
        trend.run_job("retention")
        assert len(stored_events(trend)) == 0  # its minute is clean, so raw events may go
        assert len(table_rows(trend, L1M)) == 1  # the dirty 5m parent still needs this row
        trend.rollup()
        assert sum(m[0] for m in table_rows(trend, L5M).values()) == 1
        trend.run_job("retention")
        assert table_rows(trend, L1M) == {}
        assert sum(m[0] for m in table_rows(trend, L1H).values()) == 1

    def test_a_late_event_after_retention_is_counted_at_every_level(self, make_trend: TrendFactory,
                                                                    clock: FakeClock) -> None:
        trend = make_trend(**SHORT)
        reference = Reference()
        _hourly_history(trend.ingest, clock, reference, hours=6)
        trend.rollup()
        trend.run_job("retention")
        late = clock.now_ms() - 55 * MINUTE_MS  # inside the accepted lateness of 1h
        reference.add(late, "search", "late")
        trend.ingest([{"event": "search", "key": "late", "ts": late / 1000}])
        clock.advance(2 * MINUTE_MS)
        trend.rollup()
        now = clock.now_ms()
        for level, kept in ((L1M, 2 * HOUR_MS), (L5M, 3 * HOUR_MS), (L1H, 30 * 24 * HOUR_MS)):
            expected = {g: m for g, m in group_events(reference.events, level).items()
                        if level.is_closed(g[0], now) and g[0] >= now - kept}
            actual = {g: m for g, m in table_rows(trend, level).items() if level.is_closed(g[0], now)}
            assert {g: m for g, m in actual.items() if g[0] >= now - kept} == expected
        hour = late - late % HOUR_MS
        assert table_rows(trend, L1H)[(hour, "search", "", "late")][0] == 1
        assert trend.top("search", window="1h").items[-1].key == "late"

    def test_retention_is_a_scheduled_job(self, trend: Trend) -> None:
        info = {job.job: job for job in trend.worker.info()}
        assert info["retention"].schedule == "hour=* minute=17 second=30 UTC"
