"""Reads keep the key totals of clean rollup buckets between requests (storage/read/kept.py). They
must stay exact: a recompute or a retention delete voids them, even when the bucket is clean again
with other rows by the next read (marker deleted, then back at version 1: the same plan as before)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.conftest import T0
from tests.reference import ref_counts, ref_rising, ref_top, settle
from trend.clock import FakeClock
from trend.model import HOUR_MS, LEVELS_BY_NAME, MINUTE_MS, Hierarchy
from trend.ranking import Totals, ranked_with
from trend.service import Trend
from trend.storage.shared import data_versions
from trend.storage.shared.markers import mark

# White-box tests of one backend's way of keeping raw spans.
ON_SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)

WINDOW = 24 * HOUR_MS


def _store(trend: Trend, events: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    trend.ingest([{**e, "ts": e["ts"] / 1000} for e in new])
    events.extend({"segment": "", **e} for e in new)


def _top(trend: Trend, limit: int = 5) -> list[tuple[str, int]]:
    return [(item.key, item.count) for item in trend.top("search", window="24h", limit=limit).items]


def _expected(events: list[dict[str, Any]], limit: int = 5) -> list[tuple[str, int]]:
    end = T0 + MINUTE_MS
    return ref_top(events, "search", None, end - WINDOW, end, limit)


def test_a_late_event_in_a_clean_hour_counts_after_its_recompute(trend: Trend, clock: FakeClock) -> None:
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": f"k{n % 7}", "ts": T0 - n * 7 * MINUTE_MS} for n in range(200)])
    settle(trend, T0)
    assert _top(trend) == _expected(events)  # computed, and kept
    # Late events for "late" in an hour that was clean: its marker makes the plan read it from below.
    _store(trend, events, [{"event": "search", "key": "late", "ts": T0 - 10 * HOUR_MS + 5 * MINUTE_MS}] * 40)
    assert _top(trend) == _expected(events)
    # Recomputed, the hour is clean again: the same plan as the first read, with other rows.
    settle(trend, T0)
    assert _top(trend)[0] == ("late", 40)
    assert _top(trend) == _expected(events)


def test_kept_totals_serve_until_their_level_moves(trend: Trend) -> None:
    """White box: rows changed behind trend's back are not seen while the versions stand still, which
    shows the totals are kept; a bump of the level's version (what every recompute and retention
    delete does) voids them."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": "a", "ts": T0 - 5 * HOUR_MS}] * 3)
    settle(trend, T0)
    assert _top(trend) == [("a", 3)]
    with trend.db.write() as tx:
        tx.execute(text("UPDATE agg_1h SET count = 30"))
    assert _top(trend) == [("a", 3)]
    with trend.db.write() as tx:
        tx.execute(text("UPDATE trend_data_versions SET version = version + 1 WHERE level LIKE '1h@%'"))
    assert _top(trend) == [("a", 30)]


def test_retention_voids_kept_totals(make_trend: Any, clock: FakeClock) -> None:
    # The seed's three levels: with 1h on top, its rows are what retention takes and nothing rolls them up.
    trend: Trend = make_trend(levels=Hierarchy(tuple(LEVELS_BY_NAME[name] for name in ("1m", "5m", "1h"))),
                              retention={"1h": 3 * HOUR_MS})
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": "old", "ts": T0 - 5 * HOUR_MS}] * 2)
    settle(trend, T0)
    assert _top(trend) == [("old", 2)]
    trend.run_job("retention")
    with trend.db.read() as tx:
        assert tx.execute(text("SELECT count(*) FROM agg_1h")).scalar() == 0
    # agg_1h lost the hour; the plan still reads it from agg_1h (clean, closed) and finds nothing.
    assert _top(trend) == []


def test_ranking_kept_totals_with_fresh_ones_is_exact() -> None:
    base = Totals({"a": 9, "b": 7, "c": 7, "d": 1})
    assert ranked_with(base, {"d": 8, "e": 7}, 3, 1) == [("a", 9), ("d", 9), ("b", 7)]
    assert ranked_with(base, {"a": 1}, 2, 8) == [("a", 10)]
    assert ranked_with(base, {}, None, 7) == [("a", 9), ("b", 7), ("c", 7)]


def totals_by_key(least: int, most: int, lowest: int = 0) -> st.SearchStrategy[dict[str, int]]:
    return st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), st.integers(lowest, 12), min_size=least,
                           max_size=most)


@settings(max_examples=300, deadline=None)
@given(totals_by_key(60, 300),
       # Negative fresh totals too: a sum of values may fall, which moves a kept key down the ranking.
       st.lists(st.tuples(totals_by_key(0, 30, lowest=-12), st.integers(1, 40), st.integers(0, 6)),
                min_size=1, max_size=4))
def test_ranking_many_keys_is_the_sum_sorted(base_totals: dict[str, int],
                                             reads: list[tuple[dict[str, int], int, int]]) -> None:
    """Many ties and a long tail: only the lead of the kept totals is sorted (``Totals.leading``), and
    it is kept between reads with other fresh totals and limits. Each read must equal summing the two
    and sorting everything."""
    base = Totals(base_totals)
    for extra, limit, at_least in reads:
        summed = {key: base_totals.get(key, 0) + extra.get(key, 0) for key in {*base_totals, *extra}}
        expected = sorted(((key, total) for key, total in summed.items() if total >= at_least),
                          key=lambda item: (-item[1], item[0]))[:limit]
        assert ranked_with(base, extra, limit, at_least) == expected


def test_rising_baselines_follow_a_late_event_and_its_recompute(trend: Trend) -> None:
    """rising keeps each baseline window's totals too: a late event in one of them must move μ, both
    while its minute is dirty and after the recompute that makes the window's plan look as before."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": f"k{n % 5}", "ts": T0 - n * 97_000} for n in range(150)])
    _store(trend, events, [{"event": "search", "key": "k1", "ts": T0 - n * 1_000} for n in range(12)])
    settle(trend, T0)

    def rising() -> list[tuple[str, int, float]]:
        return [(i.key, i.count, round(i.score, 9)) for i in trend.rising("search", window="15m", min_count=1).items]

    def expected() -> list[tuple[str, int, float]]:
        end = T0 + MINUTE_MS
        return [(key, count, round(score, 9))
                for key, count, score in ref_rising(events, "search", None, end - 15 * MINUTE_MS, end, 12, 1)[:10]]

    assert rising() == expected()
    _store(trend, events, [{"event": "search", "key": "k1", "ts": T0 - 2 * HOUR_MS - 7 * MINUTE_MS}] * 30)
    assert rising() == expected()
    settle(trend, T0)
    assert rising() == expected()


def test_pending_late_minutes_are_kept_and_follow_their_markers(trend: Trend) -> None:
    """A dirty closed minute is read from raw events, and its totals kept while its marker's version
    and the 1m level's data version stand still. Each step checks against the reference."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": f"k{n % 4}", "ts": T0 - n * 61_000} for n in range(300)])
    settle(trend, T0)
    late = T0 - 3 * HOUR_MS + 17_000
    for round_ in range(3):
        _store(trend, events, [{"event": "search", "key": "late", "ts": late}] * (10 + round_))
        assert _top(trend) == _expected(events)
        assert _top(trend) == _expected(events)  # the second read is answered from kept totals
    settle(trend, T0)  # the marker is released, and its next one starts at version 1 again
    _store(trend, events, [{"event": "search", "key": "late", "ts": late}] * 5)
    assert _top(trend) == _expected(events)


@ON_POSTGRES
def test_a_dirty_minutes_kept_totals_change_only_with_its_marker(trend: Trend) -> None:
    """White box (PostgreSQL): a raw event slipped in without a marker is not seen (the totals are
    kept); marking the minute, as every ingest does in the same transaction, makes the next read see
    it. SQLite carries every raw span forward by seq instead (the next test)."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": "a", "ts": T0 - 5 * HOUR_MS}] * 3)
    settle(trend, T0)
    minute = T0 - 2 * HOUR_MS
    _store(trend, events, [{"event": "search", "key": "b", "ts": minute}] * 2)
    assert _top(trend) == [("a", 3), ("b", 2)]
    with trend.db.write() as tx:
        tx.execute(text("INSERT INTO fact_events (ts, event, segment, key, value, received_at, minute) "
                        "VALUES (:t, 'search', '', 'b', 1.0, :t, :t)"), {"t": minute})
    assert _top(trend) == [("a", 3), ("b", 2)]
    with trend.db.write() as tx:
        mark(tx, "1m", [minute])
    assert _top(trend) == [("a", 3), ("b", 3)]


def test_open_minutes_add_only_the_events_stored_since_the_last_read(trend: Trend, clock: FakeClock) -> None:
    """A hot top list: reads between ingests into the open minute, duplicates and an erasure among
    them, each exact against the reference (on SQLite the open minute's totals are carried forward)."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": f"k{n % 6}", "ts": T0 - n * 300_000} for n in range(200)])
    settle(trend, T0)
    for round_ in range(12):
        batch: list[dict[str, Any]] = [{"event": "search", "key": f"hot{(round_ * 7 + n) % 5}", "ts": T0 + 1_000 + n,
                  "user_id": f"u{round_}"} for n in range(round_ + 3)]
        trend.ingest([{**e, "ts": e["ts"] / 1000} for e in batch] + [
            {"event": "search", "key": "dup", "ts": (T0 + 2_000) / 1000, "event_id": "same-id"}])
        events.extend({"segment": "", **e} for e in batch)
        if round_ == 0:
            events.append({"event": "search", "key": "dup", "segment": "", "ts": T0 + 2_000})
        if round_ == 8:
            trend.erase_user("u3")
            events[:] = [e for e in events if e.get("user_id") != "u3"]
        assert _top(trend, 100) == _expected(events, 100), round_  # every key, so no miscount hides


@ON_SQLITE
@pytest.mark.parametrize("minute", [T0, T0 - 2 * HOUR_MS], ids=["open", "closed and dirty"])
def test_raw_minute_totals_are_carried_by_seq(trend: Trend, minute: int) -> None:
    """White box (SQLite): an event slipped in below the seq of the last read is not seen, which shows
    only newer events are read, in an open minute and in a closed dirty one alike; a bump of the raw
    data version (what every deletion of raw events does) makes the next read count the minute again.
    PostgreSQL reads the open minutes whole: its sequence order is not commit order."""
    _store(trend, [], [{"event": "search", "key": "b", "ts": T0 - 5 * HOUR_MS}])
    settle(trend, T0)
    _store(trend, [], [{"event": "search", "key": "a", "ts": minute}] * 3)
    assert _top(trend) == [("a", 3), ("b", 1)]
    with trend.db.write() as tx:
        tx.execute(text("INSERT INTO fact_events (seq, ts, event, segment, key, value, received_at, minute) "
                        "VALUES (-1, :t, 'search', '', 'a', 1.0, :t, :t)"), {"t": minute})
        mark(tx, "1m", [minute])
    assert _top(trend) == [("a", 3), ("b", 1)]
    _store(trend, [], [{"event": "search", "key": "a", "ts": minute}])
    assert _top(trend) == [("a", 4), ("b", 1)]
    with trend.db.write() as tx:
        data_versions.bump(tx, "raw")
    assert _top(trend) == [("a", 5), ("b", 1)]


def _top_users(trend: Trend, limit: int = 5, by: str = "count") -> list[tuple[str, int, int | None]]:
    return [(item.key, item.count, item.users)
            for item in trend.top("search", window="24h", limit=limit, by=by).items]


def _expected_users(events: list[dict[str, Any]], limit: int = 5, by: str = "count"
                    ) -> list[tuple[str, int, int | None]]:
    end = T0 + MINUTE_MS
    counts = ref_counts(events, "search", None, end - WINDOW, end)
    users = ref_counts(events, "search", None, end - WINDOW, end, "users")
    return [(key, counts[key], users.get(key, 0))
            for key, _ in ref_top(events, "search", None, end - WINDOW, end, limit, by=by)]


def test_users_of_the_keys_shown_follow_late_users_recomputes_and_the_open_minute(trend: Trend) -> None:
    """The users sketches of the keys a top shows are kept too: over clean buckets, over pending late
    minutes, and (SQLite) over the open minute carried forward by seq. New users in each, an erasure
    and the recompute that makes the plan look as before must all show, by count and by users."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": f"k{n % 4}", "ts": T0 - n * 61_000, "user_id": f"u{n % 9}"}
                           for n in range(300)])
    settle(trend, T0)
    late = T0 - 3 * HOUR_MS + 17_000
    for round_ in range(4):
        _store(trend, events, [{"event": "search", "key": "k1", "ts": late, "user_id": f"late{round_}-{n}"}
                               for n in range(3)])
        _store(trend, events, [{"event": "search", "key": f"k{n % 3}", "ts": T0 + 1_000 + n,
                                "user_id": f"open{round_}-{n}"} for n in range(round_ + 2)])
        if round_ == 2:
            trend.erase_user("late1-0")
            trend.erase_user("open1-1")
            events[:] = [e for e in events if e.get("user_id") not in ("late1-0", "open1-1")]
        for by in ("count", "users"):
            assert _top_users(trend, by=by) == _expected_users(events, by=by), (round_, by)
            assert _top_users(trend, by=by) == _expected_users(events, by=by), (round_, by)  # kept
    settle(trend, T0)  # the marker is released, and its next one starts at version 1 again
    _store(trend, events, [{"event": "search", "key": "k2", "ts": late, "user_id": "after"}])
    assert _top_users(trend) == _expected_users(events)


def test_kept_users_sketches_serve_until_their_level_moves(trend: Trend) -> None:
    """White box: sketches cleared behind trend's back are not seen while the versions stand still,
    which shows the users figures are kept; a bump of the level's version voids them."""
    _store(trend, [], [{"event": "search", "key": "a", "ts": T0 - 5 * HOUR_MS, "user_id": f"u{n}"} for n in range(3)])
    settle(trend, T0)
    assert _top_users(trend) == [("a", 3, 3)]
    with trend.db.write() as tx:
        tx.execute(text("UPDATE agg_1h SET users_sketch = NULL"))
    assert _top_users(trend) == [("a", 3, 3)]
    with trend.db.write() as tx:
        data_versions.bump(tx, "1h", T0 - 5 * HOUR_MS, T0 - 4 * HOUR_MS)
    assert _top_users(trend) == [("a", 3, 0)]


def _keep_an_open_minute_user(trend: Trend) -> None:
    """Key a: one user an hour ago and one in the open minute, read once so that its figures are kept."""
    _store(trend, [], [{"event": "search", "key": "a", "ts": T0 - HOUR_MS, "user_id": "old"}])
    _store(trend, [], [{"event": "search", "key": "a", "ts": T0, "user_id": "u"}])
    assert _top_users(trend) == [("a", 2, 2)]


@ON_SQLITE
def test_open_minute_users_are_carried_by_seq(trend: Trend) -> None:
    """White box (SQLite): a user slipped in below the seq of the last read is not seen; a bump of
    the raw data version makes the next read fold the open minute's users again."""
    _keep_an_open_minute_user(trend)
    with trend.db.write() as tx:
        tx.execute(text("INSERT INTO fact_events (seq, ts, event, segment, key, value, user_id, received_at, minute) "
                        "VALUES (-1, :t, 'search', '', 'a', 1.0, 'hidden', :t, :m)"), {"t": T0, "m": T0})
    _store(trend, [], [{"event": "search", "key": "a", "ts": T0, "user_id": "v"}])
    assert _top_users(trend) == [("a", 3, 3)]  # v is seen; the count too reads only newer events
    with trend.db.write() as tx:
        data_versions.bump(tx, "raw")
    assert _top_users(trend) == [("a", 4, 4)]


@ON_SQLITE
def test_an_older_snapshot_never_takes_figures_kept_by_a_newer_one(trend: Trend,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """White box (SQLite): a read whose snapshot began before an ingest runs after a newer read has
    kept the open minute's count and users at the newer seq. It must answer as of its own snapshot,
    not with the newer figures."""
    _keep_an_open_minute_user(trend)
    with trend.db.read() as older:
        older.execute(text("SELECT count(*) FROM fact_events")).scalar_one()  # its snapshot begins here
        _store(trend, [], [{"event": "search", "key": "a", "ts": T0, "user_id": "v"}])
        assert _top_users(trend) == [("a", 3, 3)]  # kept at the newer seq
        monkeypatch.setattr(trend.db, "read", lambda: nullcontext(older))
        assert _top_users(trend) == [("a", 2, 2)]
        assert _top_users(trend, by="users") == [("a", 2, 2)]
    monkeypatch.undo()
    assert _top_users(trend) == [("a", 3, 3)]


def test_a_recompute_of_another_day_keeps_todays_totals(trend: Trend) -> None:
    """White box: data versions are per level and day. A recompute of a bucket two days back (a
    catch-up, or late data for it) leaves the totals kept for the last 24h alone, which a row changed
    behind trend's back shows; a recompute inside the window voids them."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": "a", "ts": T0 - 5 * HOUR_MS}] * 3)
    _store(trend, events, [{"event": "search", "key": "old", "ts": T0 - 2 * WINDOW}])
    settle(trend, T0)
    assert _top(trend) == [("a", 3)]
    with trend.db.write() as tx:
        tx.execute(text("UPDATE agg_1h SET count = 30 WHERE key = 'a'"))
    _store(trend, events, [{"event": "search", "key": "old", "ts": T0 - 2 * WINDOW}])
    settle(trend, T0)  # recomputes the old minute, its 5m and its hour: all on another day
    assert _top(trend) == [("a", 3)]
    _store(trend, events, [{"event": "search", "key": "b", "ts": T0 - 5 * HOUR_MS}])
    settle(trend, T0)  # recomputes the hour of "a": its day's version moves, and the kept totals go
    assert _top(trend) == [("a", 3), ("b", 1)]


def test_a_window_moving_by_the_minute_stays_exact_while_its_full_hours_are_kept(trend: Trend,
                                                                                clock: FakeClock) -> None:
    """Between reads the 24h window moves by a minute: its 1m and 5m edges are read again and its
    full hours are kept apart (``_sum_of_parts``). A late event in one of those hours, once
    recomputed, counts in the next minute's read."""
    events: list[dict[str, Any]] = []
    _store(trend, events, [{"event": "search", "key": f"k{n % 9}", "ts": T0 - n * 13 * MINUTE_MS - n * 1000}
                           for n in range(100)])
    for minute in range(4):
        now = T0 + minute * MINUTE_MS
        clock.set(now)
        settle(trend, now)
        end = now + MINUTE_MS
        assert _top(trend, 20) == ref_top(events, "search", None, end - WINDOW, end, 20)
        if minute == 1:
            _store(trend, events, [{"event": "search", "key": "late", "ts": T0 - 10 * HOUR_MS + 7 * MINUTE_MS}] * 30)
    assert _top(trend, 1) == [("late", 30)]


def test_late_events_at_a_moving_windows_edges_count_once_their_buckets_are_recomputed(trend: Trend,
                                                                                       clock: FakeClock) -> None:
    """The 1m and 5m buckets at the edges of a window are kept one bucket at a time (``_buckets_of``),
    so a bucket read a minute ago is not read again. Late events in buckets already read, at both
    edges, count in the first read after their recompute, while the window moves across 5m and
    hour boundaries."""
    events: list[dict[str, Any]] = []
    first = T0 - WINDOW - HOUR_MS
    _store(trend, events, [{"event": "search", "key": f"k{n % 7}", "ts": first + n * 7 * MINUTE_MS + 500}
                           for n in range(214)])  # up to T0
    for minute in range(14):
        now = T0 + minute * MINUTE_MS
        clock.set(now)
        settle(trend, now)
        end = now + MINUTE_MS
        assert _top(trend, 30) == ref_top(events, "search", None, end - WINDOW, end, 30), minute
        if minute in (2, 6, 9):
            # Minutes from the window's start and from its end, so within the edges for a while to come.
            offsets = [MINUTE_MS, 3 * MINUTE_MS, 7 * MINUTE_MS, 12 * MINUTE_MS, 40 * MINUTE_MS,
                       WINDOW - 3 * MINUTE_MS, WINDOW - 8 * MINUTE_MS, WINDOW - 20 * MINUTE_MS]
            _store(trend, events, [{"event": "search", "key": f"late-{minute}-{n}", "ts": end - WINDOW + offset + 900}
                                   for n, offset in enumerate(offsets) for _ in range(n + 2)])
