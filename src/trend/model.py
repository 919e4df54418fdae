"""Events, buckets and time arithmetic: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_FUTURE_MS = 5 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class EventRow:
    """A validated event, ready to store. Times are ms since the epoch, UTC."""

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


def format_utc(ms: int) -> str:
    """The log form of a bucket: seconds precision, zone named."""
    return to_datetime(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def isoformat(ms: int, zone: ZoneInfo) -> str:
    """The API form of a time: ISO-8601 with an explicit offset, in the display zone."""
    return to_datetime(ms, zone).isoformat(timespec="seconds" if ms % 1000 == 0 else "milliseconds")


@dataclass(frozen=True, slots=True)
class Level:
    """One rollup level. The hierarchy is data; one runner serves every level."""

    name: str
    width: int
    grace: int
    parent: str | None

    def closed_cutoff(self, now_ms: int) -> int:
        """The newest bucket that is closed at ``now``: ``bucket + width + grace <= now``."""
        return floor_to(now_ms - self.width - self.grace, self.width)

    def is_closed(self, bucket: int, now_ms: int) -> bool:
        return bucket + self.width + self.grace <= now_ms


# Graces match the seed's timings: 1m at second 5, 5m at second 15, 1h at minute 1.
LEVELS: tuple[Level, ...] = (
    Level("1m", MINUTE_MS, 5_000, parent="5m"),
    Level("5m", 5 * MINUTE_MS, 15_000, parent="1h"),
    Level("1h", HOUR_MS, 60_000, parent=None),
)
LEVELS_BY_NAME = {level.name: level for level in LEVELS}


RAW = "raw"  # the source name of fact_events in a read plan


@dataclass(frozen=True, slots=True)
class Span:
    """``[start, end)`` read from one source: ``raw`` or a level name."""

    source: str
    start: int
    end: int
