"""Insert a batch of events plus the dirty markers of their minutes, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, union_all

from trend.model import MINUTE_MS, RAW, EventRow
from trend.storage.dialects import CHUNK, chunked
from trend.storage.shared import data_versions
from trend.storage.shared.markers import mark
from trend.storage.shared.schema import dimensions, fact_events, level_table
from trend.storage.shared.tx import Tx
from trend.storage.write import alerts


@dataclass(frozen=True)
class Inserted:
    accepted: int
    duplicates: int


COLUMNS = ("event_id", "ts", "event", "segment", "key", "user_id", "value", "received_at", "minute")
# An event as stored: one value per column of COLUMNS, in that order.
StoredEvent = tuple[str | None, int, str, str, str, str | None, float, int, int]


def as_stored(row: EventRow, received_at: int) -> StoredEvent:
    return (row.event_id, row.ts, row.event, row.segment, row.key, row.user_id, row.value, received_at,
            row.ts - row.ts % MINUTE_MS)


def insert_events(tx: Tx, rows: Sequence[EventRow], received_at: int) -> Inserted:
    """Store ``rows``; an ``event_id`` seen before (in the table or earlier in the batch) is a duplicate."""
    return insert_stored(tx, [as_stored(row, received_at) for row in rows])


def insert_stored(tx: Tx, rows: Sequence[StoredEvent]) -> Inserted:
    """:func:`insert_events` for rows already in their stored form (bulk ingest builds them elsewhere)."""
    plain = [row for row in rows if row[0] is None]
    keyed: dict[str, StoredEvent] = {}
    for row in rows:
        if row[0] is not None:
            keyed.setdefault(row[0], row)
    # Tuples straight to COPY or executemany: index upkeep is the real cost, so shed the rest.
    for part in chunked(plain, CHUNK):
        tx.dialect.bulk_insert(tx.conn, fact_events.name, COLUMNS, part)
    # In id order: concurrent batches then wait for each other's ids in one order, so cannot deadlock.
    ordered = sorted(keyed.values(), key=lambda row: str(row[0]))
    stored_ids = tx.dialect.insert_keyed(tx.conn, fact_events.name, COLUMNS, ordered, "event_id") if keyed else set()
    stored = [*plain, *(row for row in keyed.values() if row[0] in stored_ids)]
    mark(tx, tx.levels.finest.name, {row[8] for row in stored})
    remember_dimensions(tx, {(row[2], row[3]) for row in stored})
    if stored:
        data_versions.events_stored(tx)
    return Inserted(accepted=len(stored), duplicates=len(rows) - len(stored))


def remember_dimensions(tx: Tx, pairs: set[tuple[str, str]]) -> None:
    if pairs:
        tx.execute(tx.dialect.insert_new(dimensions),
                   [{"event": event, "segment": segment} for event, segment in sorted(pairs)])


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

    A scan of fact_events: no index on user_id, because every ingest would pay for one; erasures are rare.
    Alert firings of the person's keys are redacted (:func:`alerts.redact_keys`); where the backend can,
    the deletes overwrite what they delete (``Dialect.erasing``)."""
    found = tx.execute(select(fact_events.c.minute, fact_events.c.key).where(fact_events.c.user_id == user_id)
                       .distinct()).all()
    minutes = sorted({int(row.minute) for row in found})
    with tx.dialect.erasing(tx.conn):
        deleted = tx.execute(fact_events.delete().where(fact_events.c.user_id == user_id)).rowcount
        alerts.redact_keys(tx, {row.key for row in found})
    mark(tx, tx.levels.finest.name, minutes)
    if deleted:
        data_versions.bump(tx, RAW)  # a later event may take a deleted seq (storage/read/carried.py)
    return Erased(events=int(deleted), minutes=len(minutes))


def newest_minute(tx: Tx) -> int | None:
    """The minute of the newest stored event (an index probe on either backend), None when empty."""
    found = tx.execute(select(func.max(fact_events.c.minute))).scalar()
    return None if found is None else int(found)


def history_start(tx: Tx) -> int | None:
    """The oldest time trend still holds anything for (raw events or any level's rows), None when empty:
    one index probe per table, in one statement."""
    probes = [select(func.min(fact_events.c.minute).label("oldest")),
              *(select(func.min(level_table(level).c.bucket).label("oldest")) for level in tx.levels)]
    found = [int(value) for value in tx.execute(union_all(*probes)).scalars() if value is not None]
    return min(found) if found else None
