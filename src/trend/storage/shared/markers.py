"""The ``rollup_dirty`` markers: what ingest and rollups leave behind, and what runs pick up."""

from __future__ import annotations

import secrets
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import and_, bindparam, case, func, or_, select

from trend.storage.shared.schema import rollup_dirty as dirty
from trend.storage.shared.tx import Tx

# Tokens lie far above any version an ingest reaches by counting from 1, and below 2**63.
_TOKEN_FLOOR = 1 << 61


def mark(tx: Tx, level: str, buckets: Iterable[int]) -> None:
    """Upsert a marker per bucket, bumping its version. Sorted, so PostgreSQL cannot deadlock."""
    ordered = sorted(set(buckets))
    if not ordered:
        return
    statement = tx.dialect.upsert(dirty, ["level", "bucket"], {"version": dirty.c.version + 1},
                                  level=level, version=1)
    tx.execute(statement, [{"bucket": bucket} for bucket in ordered])


# ``now`` for reads that take every dirty bucket, those waiting after a failed recompute included.
EVERY_BUCKET = 1 << 62
# A failed bucket waits a minute, then twice as long after every further failure, at most an hour.
_RETRY_FIRST_MS = 60_000
_RETRY_MOST_MS = 3_600_000

# Built once: the skip check runs every minute per level and should cost well under 0.1 ms.
_PROBE = (
    select(dirty.c.bucket)
    .where(dirty.c.level == bindparam("level"), dirty.c.bucket <= bindparam("cutoff"),
           or_(dirty.c.retry_at.is_(None), dirty.c.retry_at <= bindparam("now")))
    .limit(1)
)


def any_dirty(tx: Tx, level: str, cutoff: int, now: int = EVERY_BUCKET) -> bool:
    """The skip check: one probe of the primary key, no scan of events. Buckets waiting after a failed
    recompute until after ``now`` do not count."""
    return tx.execute(_PROBE, {"level": level, "cutoff": cutoff, "now": now}).first() is not None


@dataclass(frozen=True)
class Backlog:
    level: str
    dirty: int
    oldest: int | None
    newest: int | None
    failing: int = 0  # of those, buckets whose last recompute failed


def backlog(tx: Tx, level: str, cutoff: int | None = None) -> Backlog:
    where = [dirty.c.level == level]
    if cutoff is not None:
        where.append(dirty.c.bucket <= cutoff)
    failed = func.sum(case((dirty.c.failures > 0, 1), else_=0))
    query = select(func.count(), func.min(dirty.c.bucket), func.max(dirty.c.bucket), failed).where(and_(*where))
    count, oldest, newest, failing = tuple(tx.execute(query).one())
    return Backlog(level, int(count), oldest, newest, int(failing or 0))


def claim_next(tx: Tx, level: str, after: int, cutoff: int, now: int = EVERY_BUCKET) -> tuple[int, int] | None:
    """The oldest dirty closed bucket after ``after`` that no other runner holds, with its version."""
    claimed = claim_some(tx, level, after, cutoff, 1, now)
    return claimed[0] if claimed else None


def claim_some(tx: Tx, level: str, after: int, cutoff: int, limit: int, now: int = EVERY_BUCKET
               ) -> list[tuple[int, int]]:
    """Up to ``limit`` of the oldest dirty closed buckets after ``after`` that no other runner holds and
    that are not waiting after a failure, with their versions, oldest first."""
    query = (
        select(dirty.c.bucket, dirty.c.version)
        .where(dirty.c.level == level, dirty.c.bucket > after, dirty.c.bucket <= cutoff,
               or_(dirty.c.retry_at.is_(None), dirty.c.retry_at <= now))
        .order_by(dirty.c.bucket)
        .limit(limit)
    )
    return [(int(row.bucket), int(row.version)) for row in tx.execute(tx.dialect.claim(query))]


@dataclass(frozen=True)
class Failing:
    """A dirty bucket whose recompute failed: it waits until ``retry_at``, and the others go on."""

    level: str
    bucket: int
    failures: int
    retry_at: int
    error: str


def record_failure(tx: Tx, level: str, bucket: int, error: str, now: int) -> Failing | None:
    """Put the bucket back to wait: a minute after its first failure, doubling up to an hour. None
    when its marker went meanwhile (nothing is left to retry)."""
    found = tx.execute(select(dirty.c.failures).where(dirty.c.level == level, dirty.c.bucket == bucket)).scalar()
    if found is None:
        return None
    failures = int(found) + 1
    retry_at = now + min(_RETRY_MOST_MS, _RETRY_FIRST_MS << min(failures - 1, 20))
    tx.execute(dirty.update().where(dirty.c.level == level, dirty.c.bucket == bucket).values(
        failures=failures, retry_at=retry_at, last_error=error[:500]))
    return Failing(level, bucket, failures, retry_at, error[:500])


def failing(tx: Tx, level: str | None = None, limit: int = 10) -> list[Failing]:
    """The buckets whose last recompute failed, oldest first."""
    query = select(dirty).where(dirty.c.failures > 0).order_by(dirty.c.bucket, dirty.c.level).limit(limit)
    if level is not None:
        query = query.where(dirty.c.level == level)
    return [Failing(row.level, int(row.bucket), int(row.failures), int(row.retry_at or 0), row.last_error or "")
            for row in tx.execute(query)]


def clear_failures(tx: Tx, level: str, buckets: Iterable[int]) -> None:
    """Buckets recomputed after failing: their marker, if an ingest keeps it, no longer waits."""
    wanted = sorted(buckets)
    if wanted:
        tx.execute(dirty.update().where(dirty.c.level == level, dirty.c.bucket.in_(wanted)).values(
            failures=0, retry_at=None, last_error=None))


def take(tx: Tx, level: str, bucket: int, version: int) -> int | None:
    """Swap the marker's version for a fresh token, if it is still ``version``: the token, or None
    when it moved meanwhile. A run that releases its marker in a later transaction than the one that
    read the version holds a token meanwhile: a marker released by another runner and made again by
    an ingest starts at version 1, which may equal the version read, but never equals a token."""
    token = _TOKEN_FLOOR + secrets.randbits(60)
    updated = tx.execute(dirty.update().where(
        dirty.c.level == level, dirty.c.bucket == bucket, dirty.c.version == version).values(version=token))
    return token if updated.rowcount == 1 else None


def release(tx: Tx, level: str, bucket: int, version: int) -> bool:
    """Delete the marker only if no ingest bumped it since we read ``version``."""
    deleted = tx.execute(
        dirty.delete().where(dirty.c.level == level, dirty.c.bucket == bucket, dirty.c.version == version)
    )
    return deleted.rowcount == 1


def markers_between(tx: Tx, start: int, end: int) -> list[tuple[str, int]]:
    """Every marker of every level inside ``[start, end)``; usually few, hundreds after a late batch.

    Their versions are kept for the rest of the transaction, for :func:`marker_versions`."""
    query = select(dirty.c.level, dirty.c.bucket, dirty.c.version).where(dirty.c.bucket >= start, dirty.c.bucket < end)
    # Unpacked as tuples: after a late batch these are hundreds of rows per read, and a Row's
    # attribute access was a tenth of such a read.
    rows = cast(Sequence[tuple[str, int, int]], tx.execute(query).all())
    by_level: dict[str, list[tuple[int, int]]] = {}
    for level, bucket, version in rows:
        by_level.setdefault(level, []).append((bucket, version))
    tx.memo.markers = (start, end, {level: sorted(found) for level, found in by_level.items()})
    return [(level, bucket) for level, bucket, _ in rows]


def marker_versions(tx: Tx, level: str, ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """(bucket, version) of every marker of ``level`` inside the ``[start, end)`` ranges, in order:
    from this transaction's :func:`markers_between` where it covered them (the same snapshot)."""
    ranges = sorted(ranges)
    if not ranges:
        return ()
    seen = tx.memo.markers
    if seen is not None and seen[0] <= ranges[0][0] and ranges[-1][1] <= seen[1]:
        found = seen[2].get(level, [])
        return tuple(item for start, end in ranges
                     for item in found[bisect_left(found, (start,)):bisect_left(found, (end,))])
    bounds = [and_(dirty.c.bucket >= start, dirty.c.bucket < end) for start, end in ranges]
    query = select(dirty.c.bucket, dirty.c.version).where(dirty.c.level == level, or_(*bounds)).order_by(dirty.c.bucket)
    return tuple((int(row.bucket), int(row.version)) for row in tx.execute(query))
