"""Insert a batch of events plus the dirty markers of their minutes, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from trend.model import EventRow
from trend.storage.dialects import CHUNK, chunked
from trend.storage.engine import Tx
from trend.storage.markers import mark
from trend.storage.schema import dimensions, fact_events, level_table


@dataclass(frozen=True)
class Inserted:
    accepted: int
    duplicates: int


COLUMNS = ("event_id", "ts", "event", "segment", "key", "user_id", "value", "received_at", "minute")


def _as_tuple(row: EventRow, received_at: int) -> tuple[object, ...]:
    return (row.event_id, row.ts, row.event, row.segment, row.key, row.user_id, row.value, received_at, row.minute)


def insert_events(tx: Tx, rows: Sequence[EventRow], received_at: int) -> Inserted:
    """Store ``rows``; an ``event_id`` seen before (in the table or earlier in the batch) is a duplicate."""
    plain = [row for row in rows if row.event_id is None]
    keyed: dict[str, EventRow] = {}
    for row in rows:
        if row.event_id is not None:
            keyed.setdefault(row.event_id, row)
    # Tuples straight to COPY or executemany: index upkeep is the real cost, so shed the rest.
    for part in chunked(plain, CHUNK):
        tx.dialect.bulk_insert(tx.conn, fact_events.name, COLUMNS, [_as_tuple(row, received_at) for row in part])
    stored_ids = tx.dialect.insert_keyed(tx.conn, fact_events.name, COLUMNS,
                                         [_as_tuple(row, received_at) for row in keyed.values()],
                                         "event_id") if keyed else set()
    stored_keyed = [row for row in keyed.values() if row.event_id in stored_ids]
    mark(tx, tx.levels.finest.name, {row.minute for row in plain} | {row.minute for row in stored_keyed})
    remember_dimensions(tx, {(row.event, row.segment) for row in (*plain, *stored_keyed)})
    accepted = len(plain) + len(stored_keyed)
    return Inserted(accepted=accepted, duplicates=len(rows) - accepted)


def remember_dimensions(tx: Tx, pairs: set[tuple[str, str]]) -> None:
    if pairs:
        statement = tx.dialect.insert(dimensions).on_conflict_do_nothing()
        tx.execute(statement, [{"event": event, "segment": segment} for event, segment in sorted(pairs)])


def known_dimensions(tx: Tx) -> dict[str, list[str]]:
    """Event type → its segments, both sorted."""
    result: dict[str, list[str]] = {}
    for row in tx.execute(select(dimensions).order_by(dimensions.c.event, dimensions.c.segment)):
        result.setdefault(row.event, []).append(row.segment)
    return result


@dataclass(frozen=True)
class Erased:
    events: int
    minutes: int


def erase_user(tx: Tx, user_id: str) -> Erased:
    """Delete a person's raw events and mark their minutes, so every level is recomputed without them.

    A scan of fact_events: no index on user_id, because every ingest would pay for one; erasures are rare."""
    minutes = [int(m) for m in tx.execute(select(fact_events.c.minute).where(fact_events.c.user_id == user_id)
                                          .distinct()).scalars()]
    deleted = tx.execute(fact_events.delete().where(fact_events.c.user_id == user_id)).rowcount
    mark(tx, tx.levels.finest.name, minutes)
    return Erased(events=int(deleted), minutes=len(minutes))


def newest_minute(tx: Tx) -> int | None:
    """The minute of the newest stored event (an index probe on either backend), None when empty."""
    found = tx.execute(select(func.max(fact_events.c.minute))).scalar()
    return None if found is None else int(found)


def history_start(tx: Tx) -> int | None:
    """The oldest time trend still holds anything for (raw events or any level's rows), None when empty:
    one index probe per table."""
    candidates = [tx.execute(select(func.min(fact_events.c.minute))).scalar()]
    for level in tx.levels:
        table = level_table(level)
        candidates.append(tx.execute(select(func.min(table.c.bucket))).scalar())
    found = [int(value) for value in candidates if value is not None]
    return min(found) if found else None
