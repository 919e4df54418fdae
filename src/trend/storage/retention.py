"""Delete what is past its retention, in small transactions, and never what a dirty parent still needs.

A raw minute goes only when its 1m marker is gone; a bucket of level L only when its parent bucket
(and the bucket itself) carries no marker. Otherwise a later recompute of that parent would read a
source with rows missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Table, func, select

from trend.model import MINUTE_MS, RAW, Level
from trend.storage.engine import Database, Tx
from trend.storage.shared import data_versions
from trend.storage.shared.schema import fact_events, job_runs, level_table, rollup_dirty

_RUNS_KEPT_MS = 7 * 86_400_000


@dataclass(frozen=True)
class Deleted:
    what: str
    rows: int
    skipped_dirty: int


def _has_marker(tx: Tx, levels: list[str], start: int, end: int) -> bool:
    query = select(rollup_dirty.c.bucket).where(
        rollup_dirty.c.level.in_(levels), rollup_dirty.c.bucket >= start, rollup_dirty.c.bucket < end
    ).limit(1)
    return tx.execute(query).first() is not None


def _first_from(db: Database, table: Table, column: str, start: int | None) -> int | None:
    """The smallest value at or after ``start``: an index probe that jumps over empty stretches."""
    query = select(func.min(table.c[column]))
    if start is not None:
        query = query.where(table.c[column] >= start)
    with db.probe() as tx:
        value = tx.execute(query).scalar()
    return None if value is None else int(value)


def delete_raw(db: Database, before: int, should_stop: Callable[[], bool]) -> Deleted:
    """Raw events of every clean minute that ends at or before ``before``."""
    finest = db.levels.finest.name
    deleted = _delete_chunks(db, fact_events, "minute", MINUTE_MS, before, [finest], should_stop, "raw")
    with db.write() as tx:
        # Ids older than every raw event kept: an event that old is refused as too late anyway.
        oldest = tx.execute(select(func.min(fact_events.c.minute))).scalar()
        tx.dialect.forget_event_ids(tx.conn, before if oldest is None else min(before, int(oldest)))
    return deleted


def delete_level(db: Database, level: Level, before: int, should_stop: Callable[[], bool]) -> Deleted:
    """Buckets of ``level`` that end at or before ``before``, one parent bucket at a time."""
    table = level_table(level)
    parent = db.levels.parent(level)
    if parent is None:
        return _delete_chunks(db, table, "bucket", level.width, before, [level.name], should_stop, level.name)
    return _delete_chunks(db, table, "bucket", parent.width, before, [level.name, parent.name], should_stop,
                          level.name)


# One parent bucket (or one minute of raw events) per transaction keeps every lock short.
def _delete_chunks(db: Database, table: Table, column: str, chunk: int, before: int, guarded_by: list[str],
                   should_stop: Callable[[], bool], what: str) -> Deleted:
    rows = skipped = 0
    found = _first_from(db, table, column, None)
    while found is not None and found - found % chunk + chunk <= before and not should_stop():
        start = found - found % chunk
        with db.write() as tx:
            if _has_marker(tx, guarded_by, start, start + chunk):
                skipped += 1
            else:
                rows += _delete(tx, table, column, start, start + chunk, what)
        found = _first_from(db, table, column, start + chunk)
    return Deleted(what, rows, skipped)


def _delete(tx: Tx, table: Table, column: str, start: int, end: int, what: str) -> int:
    """Delete ``table``'s rows in ``[start, end)`` of ``column``, moving the data version they belong to."""
    c = table.c[column]
    deleted = int(tx.execute(table.delete().where(c >= start, c < end)).rowcount)
    if deleted and what == RAW:  # one version for all: new events may reuse a deleted seq
        data_versions.bump(tx, RAW)
    elif deleted:
        data_versions.bump(tx, what, start, end)
    return deleted


def delete_old_runs(db: Database, now_ms: int) -> int:
    with db.write() as tx:
        return int(tx.execute(job_runs.delete().where(job_runs.c.started_at < now_ms - _RUNS_KEPT_MS)).rowcount)
