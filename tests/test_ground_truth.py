"""Random histories against the reference: out-of-order, late and duplicate events, runs at random moments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.conftest import MARIADB, PYTHON_SKETCHES, T0, TrendFactory
from tests.reference import (
    Reference,
    assert_clean_buckets_equal,
    assert_levels_equal,
    clear_all,
    ref_counts,
    ref_rising,
    ref_series,
    ref_top,
    stored_events,
)
from trend import measures
from trend.api.app import create_app
from trend.cli import main
from trend.clock import FakeClock
from trend.measures import Fold, Measure
from trend.model import DAY_MS, HOUR_MS, LEVELS, MINUTE_MS, Cron, Hierarchy, Level, floor_to
from trend.service import Trend

KEYS = ["우산", "umbrella", "a", "b", "<c>"]


@dataclass(frozen=True)
class Ingest:
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class Advance:
    ms: int


@dataclass(frozen=True)
class Run:
    levels: str


event_strategy = st.fixed_dictionaries(
    {
        # Up to 3 hours before "now": late and out of order, inside the accepted lateness.
        "age_ms": st.integers(min_value=0, max_value=3 * HOUR_MS),
        "event": st.sampled_from(["search", "view"]),
        "key": st.sampled_from(KEYS),
        "segment": st.sampled_from(["", "kr"]),
        # Halves add exactly in binary, so sums compare with ==.
        "value": st.integers(min_value=-20, max_value=20).map(lambda v: v / 2),
        "event_id": st.one_of(st.none(), st.sampled_from([f"id-{n}" for n in range(8)])),
        # Few people, some events anonymous: distinct users merge across minutes, levels and windows.
        "user_id": st.one_of(st.none(), st.sampled_from([f"user-{n}" for n in range(6)])),
    }
)
step_strategy = st.one_of(
    st.builds(Ingest, st.lists(event_strategy, min_size=1, max_size=12)),
    st.builds(Advance, st.integers(min_value=1_000, max_value=20 * MINUTE_MS)),
    st.builds(Run, st.sampled_from(["1m", "5m", "1h", "all"])),
)


def play(trend: Trend, clock: FakeClock, steps: list[Any], settle_ms: int) -> None:
    """Apply ``steps``, checking clean closed buckets and every read at each step; then catch up and
    check every table of every level."""
    clear_all(trend)
    clock.set(T0 + 3 * HOUR_MS)
    reference = Reference()
    for step in steps:
        if isinstance(step, Ingest):
            now = clock.now_ms()
            payload = [{**{k: v for k, v in e.items() if k != "age_ms"}, "ts": (now - e["age_ms"]) / 1000}
                       for e in step.events]
            expected_new = [reference.add(now - e["age_ms"], e["event"], e["key"], e["segment"], e["value"],
                                          e["event_id"], e["user_id"]) for e in step.events]
            result = trend.ingest(payload)
            assert result.accepted == sum(expected_new)
            assert result.duplicates == len(expected_new) - sum(expected_new)
        elif isinstance(step, Advance):
            clock.advance(step.ms)
        else:
            trend.rollup(step.levels)
            assert_clean_buckets_equal(trend, reference.events, clock.now_ms())
        assert_reads_equal(trend, reference, clock.now_ms())
    clock.advance(settle_ms)
    trend.rollup()
    assert_levels_equal(trend, reference.events, clock.now_ms())
    assert_reads_equal(trend, reference, clock.now_ms())


class TestGroundTruth:
    # As many examples as the whole suite can afford within CI's 15 minutes on 2 cores.
    @settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(step_strategy, min_size=1, max_size=25))
    def test_tables_equal_reference_after_any_history(self, make_trend: TrendFactory, clock: FakeClock,
                                                      steps: list[Any]) -> None:
        """Whatever the order of ingests and runs, clean closed buckets are exact at every step,
        and after a final catch-up every level equals the GROUP BY of the accepted events."""
        play(make_trend(), clock, steps, settle_ms=2 * HOUR_MS)


@pytest.mark.parametrize("backend", [pytest.param("citus", marks=pytest.mark.citus)], indirect=True)
class TestGroundTruthOnCitus:
    # Fewer examples: every statement crosses three servers, and CI runs the whole suite too.
    @settings(max_examples=9, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(step_strategy, min_size=1, max_size=20))
    def test_tables_equal_reference_after_any_history(self, make_trend: TrendFactory, clock: FakeClock,
                                                      steps: list[Any]) -> None:
        """The same property on a three-node Citus cluster: distributed events and rollups, local markers."""
        play(make_trend(), clock, steps, settle_ms=2 * HOUR_MS)


@pytest.mark.parametrize("backend", [MARIADB], indirect=True)
class TestGroundTruthOnMariaDB:
    # Fewer examples than SQLite's: CI runs the whole suite on four backends within 15 minutes.
    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(step_strategy, min_size=1, max_size=20))
    def test_tables_equal_reference_after_any_history(self, make_trend: TrendFactory, clock: FakeClock,
                                                      steps: list[Any]) -> None:
        """The same property on MariaDB: InnoDB's row locks, users folded in trend's process."""
        play(make_trend(), clock, steps, settle_ms=2 * HOUR_MS)


@pytest.mark.parametrize("backend", [PYTHON_SKETCHES], indirect=True)
class TestGroundTruthWithSketchesInPython:
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(step_strategy, min_size=1, max_size=20))
    def test_tables_equal_reference_after_any_history(self, make_trend: TrendFactory, clock: FakeClock,
                                                      steps: list[Any]) -> None:
        """The same property on a PostgreSQL without postgresql-hll: users folded in trend's process."""
        play(make_trend(), clock, steps, settle_ms=2 * HOUR_MS)


# The default hierarchy plus a daily level: adding a level is one entry (docs/architecture.md, "How to add").
FOUR_LEVELS = Hierarchy((*LEVELS, Level("1d", DAY_MS, 5 * MINUTE_MS, Cron(minute="7", hour="0"),
                                        retention=5 * 365 * DAY_MS, chart_span=90 * DAY_MS, max_points=400)))
# A toy measure: how many of a bucket's events carry an event_id. Adding a measure is one entry too.
TOY = Measure("event_ids", "integer", Fold.COUNT, "event_id", Fold.SUM, "ids", 0, ranks=True,
              description="Events that carry an event_id")
four_level_steps = st.one_of(
    st.builds(Ingest, st.lists(event_strategy, min_size=1, max_size=12)),
    # Long enough steps that daily buckets close and roll up during the history.
    st.builds(Advance, st.integers(min_value=1_000, max_value=8 * HOUR_MS)),
    st.builds(Run, st.sampled_from(["1m", "5m", "1h", "1d", "all"])),
)


@pytest.fixture
def toy_measure(monkeypatch: pytest.MonkeyPatch) -> Measure:
    """The measures with :data:`TOY` added, as a developer would add an entry to trend/measures.py."""
    monkeypatch.setattr(measures, "MEASURES", (*measures.MEASURES, TOY))
    return TOY


# A real-valued measure that ranks: the sum of the events' values, which may be fractional, 0 or negative.
REVENUE = Measure("revenue", "real", Fold.SUM, "value", Fold.SUM, "revenue", 0.0, ranks=True,
                  description="The sum of the events' values")


class TestAddingALevelAndAMeasure:
    @settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(four_level_steps, min_size=1, max_size=20))
    def test_a_1d_level_and_a_toy_measure_are_exact_too(self, make_trend: TrendFactory, clock: FakeClock,
                                                         toy_measure: Measure, steps: list[Any]) -> None:
        """A hierarchy with a 1d level on top, and one more measure: tables, markers, runs and reads
        follow the same rules, and every level and read equals the reference, the new measure included."""
        trend = make_trend(levels=FOUR_LEVELS)
        play(trend, clock, steps, settle_ms=2 * DAY_MS)
        with trend.db.read() as tx:
            rows = tx.execute(text("SELECT count(*), coalesce(sum(event_ids), 0) FROM agg_1d")).one()
        events = stored_events(trend)
        assert tuple(rows) == (len({(floor_to(e["ts"], DAY_MS), e["event"], e["segment"], e["key"]) for e in events}),
                               sum(1 for e in events if e["event_id"] is not None))

    def test_the_toy_measure_and_the_level_show_wherever_their_kind_does(
            self, make_trend: TrendFactory, clock: FakeClock, toy_measure: Measure,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """The new measure is in every series point over HTTP (and its schema), in the CLI's JSON and its
        table; the new level is an interval of the API, its job is scheduled and has settings."""
        trend = make_trend(levels=FOUR_LEVELS, jobs={"agg_1d": {"hour": "1"}}, retention={"1d": "400d"})
        trend.ingest([{"event": "search", "key": "k", "event_id": f"id-{n}", "ts": (T0 - 120_000) / 1000}
                      for n in range(3)] + [{"event": "search", "key": "k", "ts": (T0 - 120_000) / 1000}])
        assert trend.settings.job("agg_1d").hour == "1"
        assert trend.settings.retention_ms("1d") == 400 * DAY_MS
        assert "agg_1d" in trend.job_ids
        with TestClient(create_app(trend=trend)) as client:
            points = client.get("/v1/series", params={"event": "search", "interval": "1d"}).json()["points"]
            schema = client.get("/openapi.json").json()
        assert points[-1]["ids"] == 3
        assert points[-1]["count"] == 4
        assert "ids" in schema["components"]["schemas"]["SeriesPoint"]["properties"]
        intervals = next(p for p in schema["paths"]["/v1/series"]["get"]["parameters"] if p["name"] == "interval")
        assert intervals["schema"]["pattern"] == "^(1m|5m|1h|1d)$"
        monkeypatch.setenv("TREND_DATABASE_URL", trend.settings.database_url)
        around = ["series", "--event", "search", "--start", str((T0 - 600_000) // 1000), "--end", str(T0 // 1000)]
        shown = CliRunner().invoke(main, [*around, "--json"], catch_exceptions=False)
        assert [p["ids"] for p in json.loads(shown.stdout)["points"] if p["count"]] == [3]
        table = CliRunner().invoke(main, around, catch_exceptions=False)
        assert "ids" in table.stdout.splitlines()[2]  # the header row

    def test_the_toy_measure_ranks_top_and_rising_everywhere(self, make_trend: TrendFactory, clock: FakeClock,
                                                             toy_measure: Measure,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """Declared with ranks=True, the new measure ranks top and rising through Python, HTTP (its schema
        too) and the CLI, is offered where by= is (the dashboard fills its choice from /v1/dimensions),
        and every item carries its value beside count and users."""
        trend = make_trend()
        # a: 5 events, 3 with an id; b: 4, all with one; c: 9, none. Users: a has 2, b 1, c 3.
        sent = ([{"key": "a", "event_id": f"a{n}" if n < 3 else None, "user_id": f"u{n % 2}"} for n in range(5)]
                + [{"key": "b", "event_id": f"b{n}", "user_id": "u0"} for n in range(4)]
                + [{"key": "c", "user_id": f"u{n % 3}"} for n in range(9)])
        trend.ingest([{"event": "search", "ts": (T0 - 120_000) / 1000, **event} for event in sent])
        trend.rollup()
        expected = {"a": (5, 2, 3), "b": (4, 1, 4), "c": (9, 3, 0)}  # count, users, ids
        top = trend.top("search", window="1h", by="ids")
        assert [(i.key, i.measures["ids"]) for i in top.items] == [("b", 4), ("a", 3)]
        assert all((i.count, i.users, i.measures["ids"]) == expected[i.key] for i in top.items)
        by_count = trend.top("search", window="1h")
        assert [(i.key, i.count, i.users, i.measures["ids"]) for i in by_count.items] == [
            (key, *expected[key]) for key in ("c", "a", "b")]
        rising = trend.rising("search", window="15m", baseline=2, min_count=1, by="ids")
        assert [(i.key, i.measures["ids"]) for i in rising.items] == [("b", 4), ("a", 3)]
        with TestClient(create_app(trend=trend)) as client:
            items = client.get("/v1/top", params={"event": "search", "by": "ids"}).json()["items"]
            risen = client.get("/v1/rising", params={"event": "search", "by": "ids", "baseline": 2,
                                                      "min_count": 1}).json()["items"]
            offered = client.get("/v1/dimensions").json()["rankings"]
            schema = client.get("/openapi.json").json()
        assert [(i["key"], i["ids"], i["count"], i["users"]) for i in items] == [("b", 4, 4, 1), ("a", 3, 5, 2)]
        assert [(i["key"], i["ids"]) for i in risen] == [("b", 4), ("a", 3)]
        assert "ids" in offered
        by = next(p for p in schema["paths"]["/v1/top"]["get"]["parameters"] if p["name"] == "by")
        assert "ids" in json.dumps(by["schema"])
        assert "ids" in schema["components"]["schemas"]["TopItem"]["properties"]
        assert "ids" in schema["components"]["schemas"]["RisingItem"]["properties"]
        monkeypatch.setenv("TREND_DATABASE_URL", trend.settings.database_url)
        asked = ["top", "--event", "search", "--by", "ids", "--at", str(T0 // 1000)]
        shown = CliRunner().invoke(main, [*asked, "--json"], catch_exceptions=False)
        assert [(i["key"], i["ids"]) for i in json.loads(shown.stdout)["items"]] == [("b", 4), ("a", 3)]
        table = CliRunner().invoke(main, asked, catch_exceptions=False)
        header = next(line for line in table.stdout.splitlines() if "rank" in line and "key" in line)
        assert header.split("┃")[1:-1] == [f" {name} " for name in ("rank", "key", "count", "users", "ids", "change")]

    def test_a_sum_that_ranks_lists_keys_below_one_and_rising_refuses_it(
            self, make_trend: TrendFactory, monkeypatch: pytest.MonkeyPatch) -> None:
        """Top by a sum keeps every key with events (0.3, 0 and -150 are values too, not "nothing");
        rising scores whole counts, so it refuses a sum with a 422 naming by, never a 500."""
        monkeypatch.setattr(measures, "MEASURES", (*measures.MEASURES, REVENUE))
        trend = make_trend()
        values = {"big": [60.0], "frac": [0.1, 0.2], "zero": [0.0], "neg": [-200.0, 50.0]}
        trend.ingest([{"event": "buy", "key": key, "value": value, "ts": (T0 - 120_000) / 1000}
                      for key, sums in values.items() for value in sums])
        trend.rollup()
        top = trend.top("buy", window="1h", by="revenue")
        expected = sorted(((key, sum(sums)) for key, sums in values.items()), key=lambda item: (-item[1], item[0]))
        assert [i.key for i in top.items] == [key for key, _ in expected]
        assert [i.measures["revenue"] for i in top.items] == pytest.approx([total for _, total in expected])
        with TestClient(create_app(trend=trend)) as client:
            refused = client.get("/v1/rising", params={"event": "buy", "by": "revenue"})
            for score in ("poisson", "zscore"):
                assert client.get("/v1/rising", params={"event": "buy", "by": "revenue", "score": score}
                                  ).status_code == 422
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "by"


def assert_reads_equal(trend: Trend, reference: Reference, now: int) -> None:
    """Every read equals the same read computed from the events, whatever the jobs have done so far."""
    if not reference.events:
        return
    end = floor_to(now, MINUTE_MS) + MINUTE_MS
    # Only event types already stored: an unknown one is refused, by design.
    event = sorted({e["event"] for e in reference.events})[-1]
    for level in trend.levels:
        width, interval = level.width, level.name
        start = floor_to(now - max(4 * HOUR_MS, 3 * width), width)
        for key, segment in ((None, None), ("우산", None), ("a", "kr")):
            got = trend.series(event, key=key, segment=segment, interval=interval, start_ms=start, end_ms=now)
            expected = ref_series(reference.events, event, key, segment, width, start, got.end)
            assert [(p.bucket, *(p.measures[m.column] for m in measures.MEASURES)) for p in got.points] == expected
    windows = [("15m", 15 * MINUTE_MS), ("1h", HOUR_MS), ("6h", 6 * HOUR_MS)]
    if trend.levels.top.width >= DAY_MS:
        windows.append(("7d", 7 * DAY_MS))  # the only window that holds whole days
    for window, width in windows:
        for segment, by in ((None, "count"), ("kr", "count"), (None, "users")):
            top = trend.top(event, segment=segment, window=window, limit=3, by=by)
            expected_top = ref_top(reference.events, event, segment, end - width, end, 3, by)
            assert [(i.key, i.count if by == "count" else i.users) for i in top.items] == expected_top
            counts = ref_counts(reference.events, event, segment, end - width, end)
            users = ref_counts(reference.events, event, segment, end - width, end, "users")
            assert [(i.count, i.users) for i in top.items] == [(counts[i.key], users[i.key]) for i in top.items]
            previous = ref_top(reference.events, event, segment, end - 2 * width, end - width, 3, by)
            assert [i.prev_rank for i in top.items] == [
                next((n for n, (k, _) in enumerate(previous, 1) if k == i.key), None) for i in top.items]
    for by in ("count", "users"):
        rising = trend.rising(event, window="15m", baseline=6, min_count=1, by=by)
        expected_rising = ref_rising(reference.events, event, None, end - 15 * MINUTE_MS, end, 6, 1, by)[:10]
        assert [(i.key, i.count if by == "count" else i.users, round(i.score, 9)) for i in rising.items] == [
            (k, c, round(z, 9)) for k, c, z in expected_rising]
