"""Reads of a few named keys from SQLite's finer levels, which have no index by key: they seek the
primary key for every bucket, segment and key, and answer exactly as the events say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.conftest import T0
from tests.reference import ref_counts, ref_series
from trend.clock import FakeClock
from trend.measures import MEASURES
from trend.model import HOUR_MS, MINUTE_MS
from trend.service import Trend

SEGMENTS = ("", "kr", "us")


def _history(trend: Trend) -> list[dict[str, Any]]:
    """Three hours of a few keys across every segment and two event types, all rolled up but the
    newest minutes; many other keys, so a walk over every key's rows would be worth avoiding."""
    events: list[dict[str, Any]] = [
        {"event": ("search", "view")[n % 5 == 0], "key": ("a", "b", "c")[n % 3] if n % 2 else f"tail{n}",
         "segment": SEGMENTS[n % 7 % 3], "user_id": f"u{n % 11}", "value": float(n % 4),
         "ts": T0 - 3 * HOUR_MS + n * 5_000}
        for n in range(3 * HOUR_MS // 5_000)]
    trend.ingest([{**e, "ts": e["ts"] / 1000} for e in events])
    trend.rollup()
    return events


def _statements(trend: Trend) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    event.listen(trend.db.engine, "before_cursor_execute",
                 lambda _conn, _cursor, statement, parameters, _context, _many: seen.append((statement, parameters)))
    return seen


def _sqlite(tmp_path: Path, clock: FakeClock) -> Trend:
    return Trend(database_url=f"sqlite:///{tmp_path / 'keyed.db'}", clock=clock, worker_enabled=False,
                 worker_yield_ratio=0.0)


class TestKeyedReadsWithoutAKeyIndex:
    def test_only_the_hourly_level_keeps_its_index_by_key_on_sqlite(self, trend: Trend) -> None:
        with trend.db.read() as tx:
            sqlite = tx.conn.dialect.name == "sqlite"
            names = {row[0] for row in tx.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'index'" if sqlite
                else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"))}
        for level in trend.levels:
            assert (f"{level.table}_key" in names) == (not sqlite or level.width >= HOUR_MS), level.name
            assert trend.db.dialect.caps.has_key_index(level) == (f"{level.table}_key" in names)

    def test_a_database_made_with_the_index_loses_it_on_start(self, tmp_path: Path, clock: FakeClock) -> None:
        with _sqlite(tmp_path, clock) as first:
            first.ingest([{"event": "search", "key": "a", "ts": (T0 - HOUR_MS) / 1000}])
            first.rollup()
            with first.db.write() as tx:  # as a release before this one made it
                tx.execute(text("CREATE INDEX agg_1m_key ON agg_1m (key, event, bucket)"))
        with _sqlite(tmp_path, clock) as again:
            series = again.series("search", key="a", interval="1m", start_ms=T0 - HOUR_MS, end_ms=T0)
            assert [p.count for p in series.points][:2] == [1, 0]
            with again.db.read() as tx:
                assert tx.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'agg_1m_key'")).scalar() == 0

    @pytest.mark.parametrize(("interval", "width", "hours"), [("1m", MINUTE_MS, 1), ("5m", 5 * MINUTE_MS, 3)])
    def test_series_of_named_keys_match_the_events_in_every_segment(
            self, trend: Trend, interval: str, width: int, hours: int) -> None:
        events = _history(trend)
        start, end = T0 - hours * HOUR_MS, T0
        for segment in (None, "kr"):
            series = trend.series("search", key=["a", "c"], segment=segment, interval=interval, start_ms=start,
                                  end_ms=end)
            for line in series.lines:
                expected = ref_series(events, "search", line.key, segment, width, series.start, series.end)
                assert [(p.bucket, *(p.measures[m.column] for m in MEASURES)) for p in line.points] == expected
                assert sum(p.count for p in line.points) > 0

    def test_the_users_beside_a_top_count_match_the_events(self, trend: Trend, clock: FakeClock) -> None:
        events = _history(trend)
        clock.set(T0 + 30_000)  # a 1h window then reads 5m and 1m edges besides the open minute
        top = trend.top("search", window="1h", limit=3)
        users = ref_counts(events, "search", None, top.start, top.end, by="users")
        assert {i.key: i.users for i in top.items} == {key: users[key] for key in ("a", "b", "c")}

    def test_a_keyed_read_seeks_rather_than_walks_every_keys_rows(self, tmp_path: Path, clock: FakeClock) -> None:
        with _sqlite(tmp_path, clock) as trend:
            _history(trend)
            seen = _statements(trend)
            trend.series("search", key="a", interval="1m", start_ms=T0 - HOUR_MS, end_ms=T0)
            trend.top("search", window="1h")  # the users of the keys it shows come from 5m and 1m edges
            # The statements that name keys; the ranking itself reads every key, as it must.
            reads = [(s, p) for s, p in seen if ("agg_1m" in s or "agg_5m" in s) and '"key" IN (SELECT' in s]
            assert len(reads) >= 2
            with trend.db.read() as tx:
                for statement, parameters in reads:
                    plan = " / ".join(row[-1] for row in tx.conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                                   parameters))
                    assert "USING PRIMARY KEY (bucket=? AND event=? AND segment=? AND key=?)" in plan, plan
                    assert "(bucket>? AND bucket<?)" not in plan, plan
