"""The named windows and intervals, and the edges of each (documented in docs/queries.md)."""

from __future__ import annotations

from dataclasses import dataclass

from trend.errors import QueryError
from trend.model import DAY_MS, HOUR_MS, LEVELS, MINUTE_MS, Hierarchy, floor_to

WINDOWS: dict[str, int] = {
    "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "1h": HOUR_MS, "6h": 6 * HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS,
}


# Query times must leave room for the windows before and after them within what the database and a
# Python datetime hold: from the epoch to the year 9000.
EARLIEST_MS = 0
LATEST_MS = 221_845_392_000_000  # 9000-01-01T00:00:00Z


def checked_time(name: str, ms: int) -> int:
    """A query time within [1970-01-01, 9000-01-01), or a :class:`QueryError` naming its parameter."""
    if not EARLIEST_MS <= ms < LATEST_MS:
        raise QueryError(name, "must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z")
    return ms


def window_ms(name: str) -> int:
    if name not in WINDOWS:
        raise QueryError("window", f"unknown window {name!r}; expected one of {', '.join(WINDOWS)}")
    return WINDOWS[name]


def interval_ms(name: str, levels: Hierarchy = LEVELS) -> int:
    """A series interval is a level: each point is one bucket of it."""
    if name not in levels.by_name:
        raise QueryError("interval", f"unknown interval {name!r}; expected one of {', '.join(levels.names)}")
    return levels.by_name[name].width


@dataclass(frozen=True)
class Window:
    """``[start, end)``: ``end`` is the end of the minute holding ``at``, so the current minute counts."""

    start: int
    end: int

    @classmethod
    def ending_at(cls, at_ms: int, width: int) -> Window:
        end = floor_to(at_ms, MINUTE_MS) + MINUTE_MS
        return cls(end - width, end)

    def before(self, count: int = 1) -> Window:
        """The window of the same width ``count`` widths earlier."""
        width = self.end - self.start
        return Window(self.start - count * width, self.end - count * width)


def series_range(levels: Hierarchy, interval: str, start_ms: int | None, end_ms: int | None,
                 now_ms: int) -> tuple[int, int]:
    """Align ``[start, end)`` outward to the interval; the default ends with the bucket holding now."""
    width = interval_ms(interval, levels)
    end = -(-(end_ms if end_ms is not None else now_ms + 1) // width) * width
    level = levels.by_name[interval]
    start = floor_to(start_ms, width) if start_ms is not None else end - level.chart_span
    if end <= start:
        raise QueryError("end", "must be after start")
    # Enough points for a chart, and a bound on what one request may cost.
    if (end - start) // width > level.max_points:
        raise QueryError("start", f"the range is too long for interval {interval}: at most "
                                  f"{level.max_points} points ({level.max_points * width // HOUR_MS} h)")
    return start, end
