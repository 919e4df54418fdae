"""Events, buckets and time arithmetic: pure, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_FUTURE_MS = 5 * MINUTE_MS
# The longest text of an event, in characters: keys and segments after normalization.
KEY_MAX = 256
SEGMENT_MAX = 64
EVENT_MAX = 64
ID_MAX = 128  # user_id and event_id


class EventRow(NamedTuple):
    """A validated event, ready to store. Times are ms since the epoch, UTC.

    A named tuple: bulk ingest builds one per line, and a frozen dataclass costs four times as much."""

    ts: int
    event: str
    key: str
    segment: str = ""
    user_id: str | None = None
    value: float = 1.0
    event_id: str | None = None

    @property
    def minute(self) -> int:
        return floor_to(self.ts, MINUTE_MS)


def floor_to(ms: int, width: int) -> int:
    return ms - ms % width


def to_datetime(ms: int, zone: ZoneInfo | None = None) -> datetime:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.astimezone(zone) if zone is not None else moment


def from_datetime(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("a time needs an explicit zone")
    return round(moment.timestamp() * 1000)


def format_duration(ms: int) -> str:
    """``518400000`` → ``6d``: the largest unit that divides it, as the settings write durations."""
    for unit, width in (("w", 7 * DAY_MS), ("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", 1000)):
        if ms % width == 0:
            return f"{ms // width}{unit}"
    return f"{ms}ms"


def format_utc(ms: int) -> str:
    """The log form of a bucket: seconds precision, zone named."""
    return to_datetime(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def isoformat(ms: int, zone: ZoneInfo) -> str:
    """The API form of a time: ISO-8601 with an explicit offset, in the display zone."""
    return to_datetime(ms, zone).isoformat(timespec="seconds" if ms % 1000 == 0 else "milliseconds")


@dataclass(frozen=True, slots=True)
class Cron:
    """The cron fields of a scheduled job, as the seed's options used them (UTC)."""

    second: str = "0"
    minute: str = "*"
    hour: str = "*"


@dataclass(frozen=True, slots=True)
class Level:
    """One rollup level. Its table, job, schedule and retention all derive from this entry."""

    name: str
    width: int
    grace: int
    cron: Cron
    retention: int  # default ms kept; TREND_RETENTION__<NAME> overrides it
    chart_span: int  # the default range of a series at this interval
    max_points: int  # the most points one series at this interval may return

    @property
    def table(self) -> str:
        return f"agg_{self.name}"

    @property
    def job(self) -> str:
        return f"agg_{self.name}"

    def closed_cutoff(self, now_ms: int) -> int:
        """The newest bucket that is closed at ``now``: ``bucket + width + grace <= now``."""
        return floor_to(now_ms - self.width - self.grace, self.width)

    def is_closed(self, bucket: int, now_ms: int) -> bool:
        return bucket + self.width + self.grace <= now_ms


class Hierarchy:
    """The levels, finest first. Each reads the one before it; the first reads ``fact_events``.

    Everything about levels (tables, jobs, settings, CLI and API choices, the read planner) derives
    from one of these, so adding a level is one entry here.
    """

    def __init__(self, levels: Sequence[Level]) -> None:
        if not levels:
            raise ValueError("a hierarchy needs at least one level")
        if levels[0].width != MINUTE_MS:
            raise ValueError("the finest level must be one minute wide: raw events are stored by minute")
        for finer, coarser in itertools.pairwise(levels):
            if coarser.width % finer.width:
                raise ValueError(f"{coarser.name} is not a whole number of {finer.name} buckets")
        self.levels: tuple[Level, ...] = tuple(levels)
        self.by_name: dict[str, Level] = {level.name: level for level in levels}
        self._index = {level.name: i for i, level in enumerate(levels)}

    def __iter__(self) -> Iterator[Level]:
        return iter(self.levels)

    def __len__(self) -> int:
        return len(self.levels)

    def __getitem__(self, index: int) -> Level:
        return self.levels[index]

    @property
    def names(self) -> list[str]:
        return [level.name for level in self.levels]

    @property
    def finest(self) -> Level:
        return self.levels[0]

    @property
    def top(self) -> Level:
        return self.levels[-1]

    def index(self, name: str) -> int:
        return self._index[name]

    def source(self, level: Level) -> Level | None:
        """The level ``level`` is computed from; None for the finest, which reads raw events."""
        index = self._index[level.name]
        return self.levels[index - 1] if index else None

    def parent(self, level: Level) -> Level | None:
        """The level that ``level`` feeds; None for the coarsest."""
        index = self._index[level.name]
        return self.levels[index + 1] if index + 1 < len(self.levels) else None

    def parent_bucket(self, level: Level, bucket: int) -> tuple[Level, int] | None:
        parent = self.parent(level)
        return None if parent is None else (parent, floor_to(bucket, parent.width))

    def by_job(self, job: str) -> Level | None:
        return next((level for level in self.levels if level.job == job), None)


# Graces and schedules match the seed's timings: 1m at second 5, 5m at second 15, 1h at minute 1.
LEVELS = Hierarchy((
    Level("1m", MINUTE_MS, 5_000, Cron(second="5"), retention=7 * DAY_MS, chart_span=HOUR_MS,
          max_points=1440),
    Level("5m", 5 * MINUTE_MS, 15_000, Cron(second="15", minute="*/5"), retention=90 * DAY_MS, chart_span=DAY_MS,
          max_points=2016),
    Level("1h", HOUR_MS, 60_000, Cron(minute="1"), retention=730 * DAY_MS, chart_span=7 * DAY_MS,
          max_points=2160),
))
LEVELS_BY_NAME = LEVELS.by_name

# Jobs that are not levels, with their default schedules. Raw events are kept as long as 1m rows.
RETENTION_JOB = "retention"
ALERTS_JOB = "alerts"  # evaluates alert rules at second 10, after the 1m job has rolled up the minute
OTHER_JOBS: dict[str, Cron] = {RETENTION_JOB: Cron(second="30", minute="17"), ALERTS_JOB: Cron(second="10")}
RAW_RETENTION = 7 * DAY_MS


def job_defaults(levels: Hierarchy = LEVELS) -> dict[str, Cron]:
    """Every scheduled job and its default schedule: one per level, then the others."""
    return {**{level.job: level.cron for level in levels}, **OTHER_JOBS}


RAW = "raw"  # the source name of fact_events in a read plan


@dataclass(frozen=True, slots=True)
class Span:
    """``[start, end)`` read from one source: ``raw`` or a level name."""

    source: str
    start: int
    end: int
    # Raw minutes that are closed (dirty, so read from raw): their events change only with their
    # markers, unlike the open minutes', which every ingest changes (storage/read/kept.py).
    settled: bool = False
