"""A server reads each event type's top lists while it starts (``Trend.warm_up``, from its lifespan):
its first users' reads then run only the statements a repeated read runs, and answer the same."""

from __future__ import annotations

import random
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.conftest import T0, TrendFactory
from tests.reference import ref_top
from trend.api.app import create_app
from trend.model import HOUR_MS, MINUTE_MS
from trend.service import Trend

KEYS = ["우산", "Coffee/Beans", "tea", "a/b/c", *(f"tail-{n}" for n in range(300))]


def _history(trend: Trend) -> list[dict[str, Any]]:
    """30 hours of two event types over a long tail of keys, rolled up, as a running server finds them."""
    rng = random.Random(3)
    # A few minutes of each of 30 hours: the 1m level has few buckets to roll up.
    events: list[dict[str, Any]] = [
        {"event": rng.choice(["search", "View"]), "key": rng.choice(KEYS), "segment": "",
         "ts": T0 - rng.randrange(1, 31) * HOUR_MS + rng.randrange(3) * MINUTE_MS + rng.randrange(MINUTE_MS)}
        for _ in range(3_000)]
    trend.ingest([{**e, "ts": e["ts"] / 1000} for e in events])
    trend.rollup()
    return events


def _statements(trend: Trend) -> list[str]:
    seen: list[str] = []
    event.listen(trend.db.engine, "before_cursor_execute",
                 lambda _conn, _cursor, statement, *_: seen.append(statement))
    return seen


def _first_and_second_read(trend: Trend) -> tuple[list[str], list[str], list[tuple[str, int]]]:
    seen = _statements(trend)
    with TestClient(create_app(trend=trend)):  # the lifespan: what `trend serve` runs before it serves
        seen.clear()
        top = trend.top("search", window="24h")
        first = list(seen)
        seen.clear()
        trend.top("search", window="24h")
        return first, list(seen), [(item.key, item.count) for item in top.items]


def test_the_first_read_after_start_up_costs_what_a_repeated_one_does(make_trend: TrendFactory) -> None:
    events = _history(make_trend())
    first, second, answer = _first_and_second_read(make_trend())  # a new process: nothing kept yet
    assert answer == ref_top(events, "search", None, T0 + MINUTE_MS - 24 * HOUR_MS, T0 + MINUTE_MS, 10)
    assert len(first) == len(second), first


def test_without_warm_up_the_first_read_sums_the_hours_itself(make_trend: TrendFactory) -> None:
    """The control: with TREND_WARM_UP_SECONDS=0 the same first read runs more statements than the next."""
    events = _history(make_trend())
    first, second, answer = _first_and_second_read(make_trend(warm_up_seconds=0))
    assert answer == ref_top(events, "search", None, T0 + MINUTE_MS - 24 * HOUR_MS, T0 + MINUTE_MS, 10)
    assert len(first) > len(second)


@pytest.mark.parametrize("budget", [0.0, 1e-9])
def test_the_warm_up_stops_at_its_budget(make_trend: TrendFactory, budget: float) -> None:
    """No read at all with 0; at most one read begun with a budget that ends at once (a read begun goes on)."""
    _history(make_trend())
    assert make_trend(warm_up_seconds=budget).warm_up() <= (0 if budget == 0 else 1)


def test_every_event_type_is_warmed_over_every_window(make_trend: TrendFactory) -> None:
    _history(make_trend())
    assert make_trend(warm_up_seconds=60).warm_up() == 2 * 4  # search and View, over 1h, 24h, 6h and 7d


def test_an_empty_database_warms_nothing(make_trend: TrendFactory) -> None:
    assert make_trend().warm_up() == 0


@pytest.mark.parametrize("backend", [pytest.param("citus", marks=pytest.mark.citus)], indirect=True)
def test_a_backend_whose_reads_keep_nothing_is_not_warmed(make_trend: TrendFactory) -> None:
    """On Citus reads keep no totals between them: a warm-up would only delay the start."""
    events = _history(make_trend())
    trend = make_trend(warm_up_seconds=60)
    assert trend.warm_up() == 0
    top = trend.top("search", window="24h")
    assert [(item.key, item.count) for item in top.items] == ref_top(
        events, "search", None, T0 + MINUTE_MS - 24 * HOUR_MS, T0 + MINUTE_MS, 10)
