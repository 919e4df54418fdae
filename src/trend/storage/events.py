"""Insert a batch of events plus the dirty markers of their minutes, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from trend.model import EventRow
from trend.storage.engine import Database, chunked
from trend.storage.markers import mark
from trend.storage.schema import dimensions, fact_events

# Bounded so a huge batch never builds one enormous statement or parameter list.
_CHUNK = 5_000


@dataclass(frozen=True)
class Inserted:
    accepted: int
    duplicates: int


COLUMNS = ("event_id", "ts", "event", "segment", "key", "user_id", "value", "received_at", "minute")


def _as_tuple(row: EventRow, received_at: int) -> tuple[object, ...]:
    return (row.event_id, row.ts, row.event, row.segment, row.key, row.user_id, row.value, received_at, row.minute)


_STAGING = "trend_ingest_staging"
_STAGING_DDL = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (event_id text, ts bigint, event text, "
                "segment text, key text, user_id text, value double precision, received_at bigint, minute bigint) "
                "ON COMMIT DELETE ROWS")
_FROM_STAGING = (f"INSERT INTO fact_events ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM {_STAGING} "
                 "ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING RETURNING event_id")


def insert_events(db: Database, conn: Connection, rows: Sequence[EventRow], received_at: int) -> Inserted:
    """Store ``rows``; an ``event_id`` seen before (in the table or earlier in the batch) is a duplicate."""
    plain = [row for row in rows if row.event_id is None]
    keyed: dict[str, EventRow] = {}
    for row in rows:
        if row.event_id is not None:
            keyed.setdefault(row.event_id, row)
    _insert_plain(db, conn, plain, received_at)
    stored_keyed = _insert_keyed(db, conn, list(keyed.values()), received_at) if keyed else []
    mark(db, conn, "1m", {row.minute for row in plain} | {row.minute for row in stored_keyed})
    remember_dimensions(db, conn, {(row.event, row.segment) for row in (*plain, *stored_keyed)})
    accepted = len(plain) + len(stored_keyed)
    return Inserted(accepted=accepted, duplicates=len(rows) - accepted)


def _insert_plain(db: Database, conn: Connection, rows: Sequence[EventRow], received_at: int) -> None:
    """Tuples straight to COPY or executemany: index upkeep is the real cost, so shed the rest."""
    for part in chunked(rows, _CHUNK):
        db.bulk_insert(conn, fact_events.name, COLUMNS, [_as_tuple(row, received_at) for row in part])


def _insert_keyed(db: Database, conn: Connection, rows: list[EventRow], received_at: int) -> list[EventRow]:
    """Insert the rows whose event_id is new; returns them."""
    if db.serialized_writers:
        # This transaction holds the only write lock, so an id absent now stays absent until commit.
        seen: set[str] = set()
        for part in chunked(rows, _CHUNK):
            query = select(fact_events.c.event_id).where(fact_events.c.event_id.in_([r.event_id for r in part]))
            seen.update(conn.execute(query).scalars())
        fresh = [row for row in rows if row.event_id not in seen]
        _insert_plain(db, conn, fresh, received_at)
        return fresh
    # Concurrent writers: COPY into a per-transaction staging table, then ON CONFLICT DO NOTHING, which
    # makes a concurrent repeat wait for the first writer and then count as a duplicate.
    conn.exec_driver_sql(_STAGING_DDL)
    stored: set[str] = set()
    for part in chunked(rows, _CHUNK):
        db.bulk_insert(conn, _STAGING, COLUMNS, [_as_tuple(row, received_at) for row in part])
        stored.update(conn.exec_driver_sql(_FROM_STAGING).scalars())
        conn.exec_driver_sql(f"TRUNCATE {_STAGING}")
    return [row for row in rows if row.event_id in stored]


def remember_dimensions(db: Database, conn: Connection, pairs: set[tuple[str, str]]) -> None:
    if pairs:
        statement = db.insert(dimensions).on_conflict_do_nothing()
        conn.execute(statement, [{"event": event, "segment": segment} for event, segment in sorted(pairs)])


def known_dimensions(conn: Connection) -> dict[str, list[str]]:
    """Event type → its segments, both sorted."""
    result: dict[str, list[str]] = {}
    for row in conn.execute(select(dimensions).order_by(dimensions.c.event, dimensions.c.segment)):
        result.setdefault(row.event, []).append(row.segment)
    return result
