"""Insert a batch of events plus the dirty markers of their minutes, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from trend.model import EventRow
from trend.storage.engine import Database, chunked
from trend.storage.markers import mark
from trend.storage.schema import fact_events

# Bounded so a huge batch never builds one enormous statement or parameter list.
_CHUNK = 5_000


@dataclass(frozen=True)
class Inserted:
    accepted: int
    duplicates: int


def _as_params(row: EventRow, received_at: int) -> dict[str, object]:
    return {
        "event_id": row.event_id, "ts": row.ts, "event": row.event, "segment": row.segment,
        "key": row.key, "user_id": row.user_id, "value": row.value, "received_at": received_at,
        "minute": row.minute,
    }


def insert_events(db: Database, conn: Connection, rows: Sequence[EventRow], received_at: int) -> Inserted:
    """Store ``rows``; an ``event_id`` seen before (in the table or earlier in the batch) is a duplicate."""
    plain = [row for row in rows if row.event_id is None]
    keyed: dict[str, EventRow] = {}
    for row in rows:
        if row.event_id is not None:
            keyed.setdefault(row.event_id, row)
    minutes = {row.minute for row in plain}
    for part in chunked(plain, _CHUNK):
        conn.execute(fact_events.insert(), [_as_params(row, received_at) for row in part])
    stored_keyed = 0
    keyed_rows = list(keyed.values())
    if keyed_rows:
        # ON CONFLICT makes a concurrent duplicate wait for the first writer, then do nothing.
        statement = (
            db.insert(fact_events)
            .on_conflict_do_nothing(index_elements=[fact_events.c.event_id])
            .returning(fact_events.c.minute)
        )
        for part in chunked(keyed_rows, _CHUNK):
            inserted = conn.execute(statement, [_as_params(row, received_at) for row in part]).scalars().all()
            stored_keyed += len(inserted)
            minutes.update(inserted)
    mark(db, conn, "1m", minutes)
    accepted = len(plain) + stored_keyed
    return Inserted(accepted=accepted, duplicates=len(rows) - accepted)
