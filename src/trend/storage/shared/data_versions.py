"""``trend_data_versions``: per level and day, a number that only grows, moved by every transaction
that rewrites or deletes rows of that level (``raw``: any raw event; one number for all).

Reads keep key totals of clean buckets between requests, stamped with these numbers as their own
snapshot saw them: equal numbers mean that no row behind the totals has changed. A marker alone
would not do: it is deleted when its bucket is recomputed and comes back at version 1, so a bucket
can be dirty, recomputed and clean again between two reads that both see it clean. The numbers are
moved here, by the storage functions that change the rows, so no caller can forget to.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from trend.model import DAY_MS, RAW, Span
from trend.storage.shared.schema import data_versions
from trend.storage.shared.tx import Tx

# Per day: a catch-up of yesterday's buckets leaves the totals that today's reads keep alone.
PARTITION_MS = DAY_MS


def partitions(level: str, start: int, end: int) -> list[str]:
    """The names of the data versions of ``level``'s buckets in ``[start, end)``: one per day."""
    return [f"{level}@{day}" for day in range(start // PARTITION_MS, (end - 1) // PARTITION_MS + 1)]


def bump(tx: Tx, level: str, start: int | None = None, end: int | None = None) -> None:
    """Inside a transaction that rewrites or deletes ``level``'s rows in ``[start, end)`` (``raw``, or
    no range: the level's own number only). An upsert, whose row lock orders the bumps as their
    transactions commit (a sequence would not). The level's own number moves too: processes of
    schema 5, which read only that one, may still serve reads during a rolling upgrade."""
    # Also where reads keep no totals (Citus): the change stamp of HTTP answers sees deletions through it.
    names = [level] if start is None or end is None else [level, *partitions(level, start, end)]
    for name in sorted(names):  # one order for every writer, so PostgreSQL cannot deadlock
        tx.execute(tx.dialect.upsert(data_versions, ["level"], {"version": data_versions.c.version + 1},
                                     level=name, version=1))


# Moved by every ingest where the newest seq does not follow commit order (PostgreSQL, Citus): what
# the change stamp of HTTP answers counts stored events by there (dialects' change_stamp).
EVENTS = "events"


def events_stored(tx: Tx) -> None:
    """Inside a transaction that stores events. Taken last, so its row lock is held only while the
    transaction commits; ingests already take turns on the current minute's marker the same way."""
    if not tx.dialect.caps.ordered_inserts:
        bump(tx, EVENTS)


def current(tx: Tx, names: Iterable[str]) -> dict[str, int]:
    """The data versions of ``names`` in this transaction's snapshot (0 for one never bumped), each
    read once per transaction: a rising read asks for the same ones once per baseline window."""
    known = tx.memo.versions
    missing = [name for name in dict.fromkeys(names) if name not in known]
    if missing:
        query = select(data_versions).where(tx.dialect.one_of(data_versions.c.level, missing))
        found = {row.level: int(row.version) for row in tx.execute(query)}
        known.update({name: found.get(name, 0) for name in missing})
    return {name: known[name] for name in names}


def of_spans(tx: Tx, spans: Iterable[Span]) -> tuple[tuple[str, int], ...]:
    """The data versions of every level and day that ``spans`` read, as this snapshot sees them: raw
    spans by the finest level's (a released marker comes back at version 1; its release moved that)."""
    finest = tx.levels.finest.name
    names = sorted({name for span in spans for name in partitions(
        finest if span.source == RAW else span.source, span.start, span.end)})
    return tuple(current(tx, names).items())
