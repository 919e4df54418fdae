"""The full hours' totals the hourly job stores for the coming hour's windows (query/prepared.py): a
new process's first ``top`` reads them instead of every hour's rows, and is still exact: they serve
only a read whose snapshot sees the data versions they were summed at."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from tests.conftest import BACKENDS, MARIADB, T0, TrendFactory
from tests.reference import ref_top, settle
from tests.servers import environment
from trend.keys import normalizer
from trend.model import HOUR_MS, MINUTE_MS
from trend.service import Trend
from trend.storage.shared.schema import stored_totals

ON_EVERY_BACKEND = pytest.mark.parametrize("backend", [*BACKENDS, MARIADB], indirect=True)

END = T0 + MINUTE_MS  # the end of a window read at T0


def _store(trend: Trend, events: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    trend.ingest([{**e, "ts": e["ts"] / 1000} for e in new])
    events.extend({"segment": "", **e} for e in new)


def _long_tail(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """A head of a few keys and a tail of long, incompressible ones (their stored totals are well past
    64 kB, a plain BLOB's size on MariaDB), over the last two days: in three minutes of each hour, so
    the rollups have few buckets to run, and both partial hours of a 24h window read at T0 have some."""
    rng = random.Random(seed)
    tail = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(4_000)]
    return [{"event": "search", "key": f"head{n % 5}" if n % 3 == 0 else tail[n % len(tail)],
             "ts": (T0 // HOUR_MS - rng.randrange(48)) * HOUR_MS + rng.choice((0, 20, 55)) * MINUTE_MS + n % 997}
            for n in range(count)]


def _top(trend: Trend, window: str = "24h", limit: int = 10) -> list[tuple[str, int]]:
    return [(item.key, item.count) for item in trend.top("search", window=window, limit=limit).items]


def _expected(events: list[dict[str, Any]], width: int = 24 * HOUR_MS, limit: int = 10) -> list[tuple[str, int]]:
    return ref_top(events, "search", None, END - width, END, limit)


def _stored_parts(trend: Trend) -> int:
    with trend.db.read() as tx:
        return int(tx.execute(select(func.count()).select_from(stored_totals)).scalar_one())


def _change_rows_behind_trends_back(trend: Trend) -> None:
    """Every hour's count times ten, without moving a data version: a read that sums the hours sees
    it, one that uses stored totals does not."""
    with trend.db.write() as tx:
        tx.execute(text("UPDATE agg_1h SET count = count * 10"))


def _bump_hour_versions(trend: Trend) -> None:
    with trend.db.write() as tx:
        tx.execute(text("UPDATE trend_data_versions SET version = version + 1 WHERE level LIKE '1h@%'"))


@ON_EVERY_BACKEND
def test_a_new_process_reads_the_stored_hours_and_only_while_they_are_current(make_trend: TrendFactory) -> None:
    trend = make_trend()
    events: list[dict[str, Any]] = []
    _store(trend, events, _long_tail(12_000))
    settle(trend, T0)  # every level, then the coming hour's window totals
    # 6h, 24h and 7d, each with the window before it: six parts for the one event type.
    assert _stored_parts(trend) == 6
    assert _top(make_trend()) == _expected(events)
    # White box: a new process does not sum the hours (it would see the change) while their versions stand.
    _change_rows_behind_trends_back(trend)
    assert _top(make_trend()) == _expected(events)
    assert _top(make_trend(), "6h") == _expected(events, 6 * HOUR_MS)
    # Once a version moves (what every recompute and retention delete does), the stored part is passed over.
    _bump_hour_versions(trend)
    tenfold = [{**e, "hour": True} for e in events]
    assert _top(make_trend()) == _with_hours_tenfold(tenfold)


def _with_hours_tenfold(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The 24h top when the full hours' rows count ten times: the window's edges (the partial hours at
    each end, read from finer levels) count once."""
    start = END - 24 * HOUR_MS
    first_hour, last_hour = -(-start // HOUR_MS) * HOUR_MS, END // HOUR_MS * HOUR_MS
    counts: dict[str, int] = {}
    for event in events:
        if start <= event["ts"] < END:
            weight = 10 if first_hour <= event["ts"] < last_hour else 1
            counts[event["key"]] = counts.get(event["key"], 0) + weight
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]


@ON_EVERY_BACKEND
def test_late_events_in_a_stored_hour_count_before_and_after_its_recompute(make_trend: TrendFactory) -> None:
    trend = make_trend()
    events: list[dict[str, Any]] = []
    _store(trend, events, _long_tail(3_000))
    settle(trend, T0)
    # Late events in an hour the stored 24h part holds: its marker makes a new process's plan read it from below.
    _store(trend, events, [{"event": "search", "key": "late", "ts": T0 - 10 * HOUR_MS + 5 * MINUTE_MS}] * 900)
    assert _top(make_trend()) == _expected(events)
    # The hour recomputed but the window totals not stored again yet: the stored ones are stale, not used.
    trend.rollups.run()
    assert _top(make_trend())[0] == ("late", 900)
    assert _top(make_trend()) == _expected(events)
    # And stored again by the next run of the hourly job.
    trend.rollup()
    _change_rows_behind_trends_back(trend)
    assert _top(make_trend()) == _expected(events)


@ON_EVERY_BACKEND
def test_the_scheduled_hourly_job_stores_them_and_keeps_only_the_coming_hours(make_trend: TrendFactory,
                                                                             clock: Any) -> None:
    trend = make_trend()
    events: list[dict[str, Any]] = []
    _store(trend, events, _long_tail(2_000))
    trend.run_job(trend.levels.finest.job)
    assert _stored_parts(trend) == 0  # only the top level's job stores them
    for level in trend.levels:
        trend.run_job(level.job)
    assert _stored_parts(trend) == 6
    # An hour later the windows have moved: the parts of the hour before are deleted, not kept.
    clock.advance(HOUR_MS)
    _store(trend, events, [{"event": "search", "key": "next", "ts": T0 + 30 * MINUTE_MS}])
    for level in trend.levels:
        trend.run_job(level.job)
    assert _stored_parts(trend) == 6
    assert _top(make_trend()) == ref_top(events, "search", None, END + HOUR_MS - 24 * HOUR_MS, END + HOUR_MS, 10)


@pytest.mark.slow
def test_a_new_trend_top_process_after_trend_rollup_reads_them_exactly(tmp_path: Path) -> None:
    """The path a user takes: events through a pipe into ``trend ingest -``, ``trend rollup``, then a new
    ``trend top`` process each time. Keys with capitals and '/' count as the server normalizes them."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = environment(url)
    rng = random.Random(3)
    now = time.time()
    head = ["Umbrella/Red", "umbrella/red", "RAIN", "기상", "a/b/c"]
    events: list[dict[str, Any]] = [{"event": "search", "key": rng.choice(head) if n % 2 else f"tail-{n % 700}",
                                     "ts": now - rng.uniform(60, 47 * 3600)} for n in range(6_000)]
    lines = "".join(json.dumps(event) + "\n" for event in events)
    subprocess.run([sys.executable, "-m", "trend", "ingest", "-"], input=lines, text=True, env=env, check=True,
                   capture_output=True, timeout=120)
    normalize = normalizer("nfkc_casefold")

    def top() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(trend top's items, the ground truth over the window it says)."""
        shown = json.loads(subprocess.run([sys.executable, "-m", "trend", "top", "--event", "search", "--window",
                                           "24h", "--json"], env=env, check=True, capture_output=True, text=True,
                                          timeout=120).stdout)
        start, end = (int(datetime.fromisoformat(shown[edge]).timestamp() * 1000) for edge in ("start", "end"))
        counts: dict[str, int] = {}
        for event in events:
            if start <= event["ts"] * 1000 < end:
                counts[normalize(event["key"])] = counts.get(normalize(event["key"]), 0) + 1
        expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]
        return [(item["key"], item["count"]) for item in shown["items"]], expected

    for _ in range(3):  # the stored parts are the hour's: start again if an hour ends between the commands
        hour = time.time() // 3600
        subprocess.run([sys.executable, "-m", "trend", "rollup"], env=env, check=True, capture_output=True,
                       timeout=300)
        shown, expected = top()
        assert shown == expected
        with sqlite3.connect(tmp_path / "cli.db") as db:  # behind trend's back, no data version moved
            db.execute("UPDATE agg_1h SET count = count * 10")
        unchanged, _ = top()
        with sqlite3.connect(tmp_path / "cli.db") as db:
            db.execute("UPDATE agg_1h SET count = count / 10")
        if time.time() // 3600 == hour:
            break
    # A new process answered from the stored totals, not from the (changed) hours' rows.
    assert unchanged == expected
