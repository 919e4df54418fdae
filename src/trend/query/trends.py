"""series, top and rising: the formulas of DESIGN section 4, each read in one snapshot."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from trend.clock import Clock
from trend.errors import QueryError
from trend.query.plan import Planner
from trend.query.windows import Window, interval_ms, series_range, window_ms
from trend.storage.engine import Database, Tx
from trend.storage.events import known_dimensions
from trend.storage.markers import markers_between
from trend.storage.reads import Filters, Point, points, tagged_totals, totals_by_key


@dataclass(frozen=True)
class Series:
    interval: str
    start: int
    end: int
    points: list[Point]  # one per bucket, zero-filled


@dataclass(frozen=True)
class TopItem:
    rank: int
    key: str
    count: int
    prev_rank: int | None

    @property
    def rank_change(self) -> int | None:
        return None if self.prev_rank is None else self.prev_rank - self.rank

    @property
    def is_new(self) -> bool:
        return self.prev_rank is None


@dataclass(frozen=True)
class Top:
    window: str
    at: int
    start: int
    end: int
    items: list[TopItem]


@dataclass(frozen=True)
class RisingItem:
    rank: int
    key: str
    count: int
    baseline: float  # μ: the mean count over the baseline windows
    stddev: float  # σ: their population standard deviation
    score: float
    growth_pct: float


@dataclass(frozen=True)
class Rising:
    window: str
    at: int
    start: int
    end: int
    baseline_windows: int
    items: list[RisingItem]


def rising_score(count: int, baseline: Sequence[int]) -> tuple[float, float, float, float]:
    """(μ, σ, z, growth %): ``z = (c - μ) / max(σ, √μ, 1)``, ``growth = 100 ((c+1)/(μ+1) - 1)``."""
    mean = statistics.fmean(baseline) if baseline else 0.0
    spread = statistics.pstdev(baseline) if len(baseline) > 1 else 0.0
    score = (count - mean) / max(spread, math.sqrt(mean), 1.0)
    growth = 100 * ((count + 1) / (mean + 1) - 1)
    return mean, spread, score, growth


class Queries:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def series(self, event: str, *, key: str | None = None, segment: str | None = None, interval: str = "1m",
               start_ms: int | None = None, end_ms: int | None = None) -> Series:
        now = self.clock.now_ms()
        start, end = series_range(self.db.levels, interval, start_ms, end_ms, now)
        width = interval_ms(interval, self.db.levels)
        with self.db.read() as tx:
            self._check_event(tx, event)
            planner = Planner(tx.levels, markers_between(tx, start, end), now)
            found = points(tx, planner.cover(start, end, top_level=interval),
                           Filters(event, segment, None if key is None else [key]), width)
        by_bucket = {point.bucket: point for point in found}
        filled = [by_bucket.get(t) or Point.empty(t) for t in range(start, end, width)]
        return Series(interval, start, end, filled)

    def top(self, event: str, *, segment: str | None = None, window: str = "1h", at_ms: int | None = None,
            limit: int = 10) -> Top:
        now = self.clock.now_ms()
        at = at_ms if at_ms is not None else now
        current = Window.ending_at(at, window_ms(window))
        previous = current.before()
        filters = Filters(event, segment)
        with self.db.read() as tx:
            self._check_event(tx, event)
            planner = Planner(tx.levels, markers_between(tx, previous.start, current.end), now)
            ranked = totals_by_key(tx, planner.cover(current.start, current.end), filters, limit=limit)
            before = totals_by_key(tx, planner.cover(previous.start, previous.end), filters, limit=limit)
        prev_ranks = {key: rank for rank, (key, _) in enumerate(before, start=1)}
        items = [TopItem(rank, key, count, prev_ranks.get(key)) for rank, (key, count) in enumerate(ranked, start=1)]
        return Top(window, at, current.start, current.end, items)

    def rising(self, event: str, *, segment: str | None = None, window: str = "15m", baseline: int = 12,
               min_count: int = 5, at_ms: int | None = None, limit: int = 10) -> Rising:
        now = self.clock.now_ms()
        at = at_ms if at_ms is not None else now
        current = Window.ending_at(at, window_ms(window))
        history = [current.before(n) for n in range(1, baseline + 1)]
        with self.db.read() as tx:
            self._check_event(tx, event)
            planner = Planner(tx.levels, markers_between(tx, history[-1].start, current.end), now)
            counts = dict(totals_by_key(tx, planner.cover(current.start, current.end),
                                        Filters(event, segment), min_count=min_count))
            past = tagged_totals(tx, [planner.cover(w.start, w.end) for w in history],
                                 Filters(event, segment, sorted(counts))) if counts else []
        windows: dict[str, list[int]] = {key: [0] * baseline for key in counts}
        for index, key, count in past:
            windows[key][index] = count
        scored = []
        for key, count in counts.items():
            mean, spread, score, growth = rising_score(count, windows[key])
            scored.append((key, count, mean, spread, score, growth))
        scored.sort(key=lambda item: (-item[4], -item[1], item[0]))
        items = [RisingItem(rank, key, count, mean, spread, score, growth)
                 for rank, (key, count, mean, spread, score, growth) in enumerate(scored[:limit], start=1)]
        return Rising(window, at, current.start, current.end, baseline, items)

    def dimensions(self) -> dict[str, list[str]]:
        with self.db.read() as tx:
            return known_dimensions(tx)

    @staticmethod
    def _check_event(tx: Tx, event: str) -> None:
        known = known_dimensions(tx)
        if known and event not in known:
            raise QueryError("event", f"unknown event {event!r}; known events: {', '.join(sorted(known))}")
