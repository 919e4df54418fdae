"""series, top and rising: the formulas of docs/queries.md, each read in one snapshot."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from trend import measures
from trend.clock import Clock
from trend.errors import QueryError, listed
from trend.measures import Measure
from trend.model import EVENT_MAX
from trend.query.plan import Planner
from trend.query.windows import Window, checked_time, interval_ms, series_range, window_ms
from trend.rising import Score, rising_ranked
from trend.storage.engine import Database, Tx
from trend.storage.read.reads import Filters, Point, measures_by_key, points, ranked_keys, tagged_totals
from trend.storage.shared.markers import markers_between
from trend.storage.write.events import history_start, known_dimensions
from trend.storage.write.migrations import users_since
from trend.validation import NUL_MESSAGE

COUNT, USERS = measures.by_read("count"), measures.by_read("users")


MAX_COMPARED_KEYS = 5
# Below any sum of values trend stores (each value is within ±1e15), and a number every backend binds.
_EVERY_VALUE = -sys.float_info.max


@dataclass(frozen=True)
class Line:
    """One key's points (``key`` None: every key together), and the previous period's, aligned."""

    key: str | None
    points: list[Point]  # one per bucket, zero-filled
    previous: list[Point] | None = None  # with compare="previous": the same buckets one period earlier


@dataclass(frozen=True)
class Series:
    interval: str
    start: int
    end: int
    lines: list[Line]
    compare: str | None = None  # "previous": each line carries the period before [start, end)

    @property
    def points(self) -> list[Point]:
        """The first line's points: the whole series when one key (or none) was asked for."""
        return self.lines[0].points

    @property
    def previous_start(self) -> int:
        return self.start - (self.end - self.start)


@dataclass(frozen=True)
class TopItem:
    rank: int
    key: str
    count: int
    users: int | None  # None where unknown: buckets from before users were counted
    prev_rank: int | None
    # Every other measure that ranks (trend/measures.py), by its read name.
    measures: dict[str, Any] = field(default_factory=dict)

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
    by: str
    items: list[TopItem]


@dataclass(frozen=True)
class RisingItem:
    rank: int
    key: str
    count: int
    users: int | None
    baseline: float  # what the baseline leads one to expect now (zscore: the baseline windows' mean)
    stddev: float  # the noise the score divides by (zscore: the baseline's standard deviation)
    score: float
    growth_pct: float | None  # against ``baseline``; None for a breakout
    # The baseline windows reach back before the oldest data trend holds: μ is not a real history.
    baseline_partial: bool = False
    breakout: bool = False  # nothing in the baseline windows: new, or back after all of them
    measures: dict[str, Any] = field(default_factory=dict)  # as TopItem's


@dataclass(frozen=True)
class Rising:
    window: str
    at: int
    start: int
    end: int
    baseline_windows: int
    by: str
    items: list[RisingItem]
    baseline_partial: bool = False  # see RisingItem
    score: str = Score.POISSON.value  # how items were scored (trend/rising.py)
    min_count: int = 5
    # When fewer than ``limit`` keys are listed: keys with events now but fewer than min_count.
    below_min_count: int | None = None


def _scoring(score: str) -> Score:
    try:
        return Score(score)
    except ValueError:
        raise QueryError("score", f"expected one of {', '.join(s.value for s in Score)}; got {score!r}") from None


def _figures(found: dict[str, Any], shown: Sequence[Measure], users_known: bool) -> dict[str, Any]:
    """A key's values of ``shown``, by read name, each as a read returns it; users None where unknown."""
    return {m.read_as: None if m is USERS and not users_known else found.get(m.column, m.empty) for m in shown}


def _ranking(by: str) -> Measure:
    choices = measures.rankings()
    if by not in choices:
        raise QueryError("by", f"expected one of {', '.join(choices)}; got {by!r}")
    return measures.by_read(by)


class Queries:
    def __init__(self, db: Database, clock: Clock, normalize: Callable[[str], str] = lambda text: text) -> None:
        self.db = db
        self.clock = clock
        # Query parameters naming a key or a segment go through the ingest's normalization.
        self.normalize = normalize

    def series(self, event: str, *, key: str | Sequence[str] | None = None, segment: str | None = None,
               interval: str = "1m", start_ms: int | None = None, end_ms: int | None = None,
               compare: str | None = None) -> Series:
        """One zero-filled line per key asked for (up to 5; none: every key together), each with the
        previous period aligned point by point when ``compare="previous"``."""
        keys: list[str | None] = [key] if key is None or isinstance(key, str) else list(key)
        if not keys or len(keys) > MAX_COMPARED_KEYS:
            raise QueryError("key", f"give from 1 to {MAX_COMPARED_KEYS} keys; got {len(keys)}")
        if compare not in (None, "previous"):
            raise QueryError("compare", f"expected previous; got {compare!r}")
        now = self.clock.now_ms()
        start, end = series_range(
            self.db.levels, interval, None if start_ms is None else checked_time("start", start_ms),
            None if end_ms is None else checked_time("end", end_ms), now)
        width = interval_ms(interval, self.db.levels)
        earlier = start - (end - start)
        with self.db.read() as tx:
            self._check_event(tx, event)
            planner = Planner(tx.levels, markers_between(tx, earlier if compare else start, end), now)
            spans = planner.cover(start, end, top_level=interval)
            before = planner.cover(earlier, start, top_level=interval) if compare else None
            known_from = users_since(tx)
            lines = []
            for one in keys:
                filters = self._filters(event, segment, None if one is None else [one])
                current = self._filled(points(tx, spans, filters, width), start, end, width, known_from)
                previous = (self._filled(points(tx, before, filters, width), earlier, start, width, known_from)
                            if before is not None else None)
                # Named as stored: "Umbrella" asked for is the line of "umbrella", as top lists it.
                lines.append(Line(None if one is None else self.normalize(one), current, previous))
        return Series(interval, start, end, lines, compare)

    @staticmethod
    def _filled(found: list[Point], start: int, end: int, width: int, known_from: int) -> list[Point]:
        by_bucket = {point.bucket: point for point in found}
        filled = [by_bucket.get(t) or Point.empty(t) for t in range(start, end, width)]
        # Buckets from before users were counted have rows without sketches: their users are unknown.
        return [p if p.bucket >= known_from else Point(p.bucket, {**p.measures, USERS.column: None}) for p in filled]

    def top(self, event: str, *, segment: str | None = None, window: str = "1h", at_ms: int | None = None,
            limit: int = 10, by: str = "count") -> Top:
        measure = _ranking(by)
        now = self.clock.now_ms()
        at = now if at_ms is None else checked_time("at", at_ms)
        current = Window.ending_at(at, window_ms(window))
        previous = current.before()
        filters = self._filters(event, segment)
        with self.db.read() as tx:
            self._check_event(tx, event)
            planner = Planner(tx.levels, markers_between(tx, previous.start, current.end), now)
            spans = planner.cover(current.start, current.end)
            # A sum of values may be below 1, zero or negative: every key with events ranks by it.
            floor = 1 if measure.kind != "real" else _EVERY_VALUE
            ranked = ranked_keys(tx, spans, filters, measure, limit=limit, at_least=floor)
            before = ranked_keys(tx, planner.cover(previous.start, previous.end), filters, measure, limit=limit,
                                 at_least=floor)
            # The other measures of the few keys shown; the ranking read only the one it ranks by.
            others = [m for m in measures.ranking() if m is not measure]
            shown = measures_by_key(tx, spans, replace(filters, keys=[key for key, _ in ranked]), others)
            users_known = current.start >= users_since(tx)
        prev_ranks = {key: rank for rank, (key, _) in enumerate(before, start=1)}
        items = []
        for rank, (key, value) in enumerate(ranked, start=1):
            figures = _figures(shown.get(key, {}), others, users_known)
            figures[measure.read_as] = value if users_known or measure is not USERS else None
            items.append(TopItem(rank, key, figures.pop(COUNT.read_as), figures.pop(USERS.read_as),
                                 prev_ranks.get(key), figures))
        return Top(window, at, current.start, current.end, by, items)

    def key_figures(self, event: str, key: str, *, segment: str | None = None, window: str = "1h",
                    at_ms: int | None = None) -> dict[str, int | None]:
        """One key's count and users over the window ending at ``at`` (0 when it has no events)."""
        now = self.clock.now_ms()
        current = Window.ending_at(now if at_ms is None else checked_time("at", at_ms), window_ms(window))
        filters = self._filters(event, segment, [key])
        with self.db.read() as tx:
            planner = Planner(tx.levels, markers_between(tx, current.start, current.end), now)
            found = measures_by_key(tx, planner.cover(current.start, current.end), filters, [COUNT, USERS])
            users_known = current.start >= users_since(tx)
        figures = found.get(filters.keys[0] if filters.keys else key, {})
        return {"count": int(figures.get(COUNT.column) or 0),
                "users": int(figures.get(USERS.column) or 0) if users_known else None}

    def rising(self, event: str, *, segment: str | None = None, window: str = "15m", baseline: int = 12,
               min_count: int = 5, at_ms: int | None = None, limit: int = 10, by: str = "count",
               score: str = Score.POISSON.value) -> Rising:
        """Keys that rise (a score above 0) by ``score`` (trend/rising.py) of the measure ``by`` against
        the ``baseline`` windows before; ``min_count`` applies to that measure."""
        measure = _ranking(by)
        if measure.kind == "real":
            raise QueryError("by", f"rising scores whole counts (events, people); {by} is a sum of values: "
                                   "rank it with top")
        scoring = _scoring(score)
        now = self.clock.now_ms()
        at = now if at_ms is None else checked_time("at", at_ms)
        current = Window.ending_at(at, window_ms(window))
        history = [current.before(n) for n in range(1, baseline + 1)]
        filters = self._filters(event, segment)
        with self.db.read() as tx:
            self._check_event(tx, event)
            planner = Planner(tx.levels, markers_between(tx, history[-1].start, current.end), now)
            spans = planner.cover(current.start, current.end)
            values = dict(ranked_keys(tx, spans, filters, measure, at_least=min_count))
            candidates = replace(filters, keys=sorted(values))
            past = tagged_totals(tx, [planner.cover(w.start, w.end) for w in history], candidates,
                                 measure) if values else []
            # Only what rises: a key at or below its baseline is not "rising", whatever its rank.
            scored = [rise for rise in rising_ranked(values, past, baseline, scoring) if rise.score > 0][:limit]
            ranking = measures.ranking()
            shown = measures_by_key(tx, spans, replace(filters, keys=[rise.key for rise in scored]), ranking)
            users_known = current.start >= users_since(tx)
            oldest = history_start(tx)
            # A short list says how many keys min_count kept out; a full one needs no such look.
            below = (len(ranked_keys(tx, spans, filters, measure, at_least=1)) - len(values)
                     if len(scored) < limit else None)
        partial = oldest is None or oldest > history[-1].start
        items = []
        for rank, rise in enumerate(scored, start=1):
            figures = _figures(shown.get(rise.key, {}), ranking, users_known)
            items.append(RisingItem(rank, rise.key, figures.pop(COUNT.read_as), figures.pop(USERS.read_as),
                                    rise.expected, rise.spread, rise.score, rise.growth_pct, partial, rise.breakout,
                                    figures))
        return Rising(window, at, current.start, current.end, baseline, by, items, partial, scoring.value, min_count,
                      below)

    def _filters(self, event: str, segment: str | None, keys: Sequence[str] | None = None) -> Filters:
        # PostgreSQL refuses NUL in text, and no stored value holds one: refuse it before any SQL.
        for name, texts in (("event", [event]), ("segment", [segment]), ("key", keys or [])):
            if any(text is not None and "\x00" in text for text in texts):
                raise QueryError(name, NUL_MESSAGE)
        return Filters(event, None if segment is None else self.normalize(segment),
                       None if keys is None else [self.normalize(key) for key in keys])

    def dimensions(self) -> dict[str, list[str]]:
        with self.db.read() as tx:
            return known_dimensions(tx)

    @staticmethod
    def _check_event(tx: Tx, event: str) -> None:
        # Event types are only ever added, so one seen before needs no look again.
        seen = tx.lasting.events
        if event in seen:
            return
        known = known_dimensions(tx)
        seen.update(known)
        if known and event not in known:
            raise QueryError("event", f"unknown event {event[:EVENT_MAX]!r}; known events: {listed(sorted(known))}")
