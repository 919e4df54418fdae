"""A bucket written in pieces against one transaction per bucket, side by side (SQLite).

Fills ``--events`` events over 2 hours (bench/history.py's long tail of 20,000 keys), rolls them
up, then per level, ``--repeat`` times and interleaved, marks every bucket of the level dirty again
and runs the level both ways. Reports each path's median run time and the longest write transaction
of its runs: what an ingest of the app may wait for.

    python -m bench.staged_rollups [--events 1000000] [--repeat 3]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from bench.common import machine, parser, scratch_trend
from bench.history import fill
from trend.clock import SystemClock
from trend.model import DAY_MS, HOUR_MS
from trend.service import Trend
from trend.storage.engine import Database, Pinned
from trend.storage.shared.markers import mark

holds: list[float] = []


def _timed(original: Callable[[Any], AbstractContextManager[Any]]) -> Callable[[Any], AbstractContextManager[Any]]:
    @contextmanager
    def write(self: Any) -> Iterator[Any]:
        began = time.perf_counter()
        with original(self) as tx:
            yield tx
        holds.append(time.perf_counter() - began)

    return write


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=1_000_000)
    args = p.parse_args()
    trend = scratch_trend("sqlite", "", SystemClock())
    trend.db.ensure_schema()
    now = int(time.time() * 1000)
    end = now - now % HOUR_MS - DAY_MS
    start = end - 2 * HOUR_MS
    fill(trend, args.events, start, end)
    trend.rollup()
    # Every write transaction of either path, timed from its turn to its commit.
    Database.write = _timed(Database.write)  # type: ignore[method-assign, assignment]
    Pinned.write = _timed(Pinned.write)  # type: ignore[method-assign, assignment]
    print(f"# {machine()}; SQLite; {args.events:,} events over 2 hours, 20,000 Zipf keys; median of {args.repeat}")
    print("| level | buckets | pieces s | one transaction s | pieces ÷ one | longest write, pieces ms "
          "| longest write, one ms |")
    print("|---|---|---|---|---|---|---|")
    for level in trend.levels:
        buckets = range(start, end, level.width)
        runs: dict[bool, list[float]] = {True: [], False: []}
        longest: dict[bool, float] = {True: 0.0, False: 0.0}
        for _ in range(args.repeat):
            for staged in (True, False):
                run_level(trend, level.name, buckets, staged, runs, longest)
        pieces, one = (statistics.median(runs[flag]) for flag in (True, False))
        print(f"| {level.name} | {len(buckets)} | {pieces:.2f} | {one:.2f} | {pieces / one:.2f} | "
              f"{longest[True] * 1000:.0f} | {longest[False] * 1000:.0f} |")
    trend.close()


def run_level(trend: Trend, level: str, buckets: range, staged: bool, runs: dict[bool, list[float]],
              longest: dict[bool, float]) -> None:
    with trend.db.write() as tx:
        mark(tx, level, buckets)
    trend.db.dialect.caps = trend.db.dialect.caps.but(staged_rollups=staged)
    holds.clear()
    began = time.perf_counter()
    [report] = trend.rollup(level)
    runs[staged].append(time.perf_counter() - began)
    assert report.buckets == len(buckets), report
    longest[staged] = max(longest[staged], *holds)


if __name__ == "__main__":
    main()
