"""How a run writes a level's buckets: the bucket's lifecycle, named once, and one write strategy per
backend, chosen from its capabilities as the read path composes its layers.

A bucket's lifecycle:

1. **marked**: an ingest (or a run below) bumps the bucket's marker in ``rollup_dirty``;
2. **claimed**: a run takes the marker at the version it read, passing over markers another runner
   holds (``claim_some``, ``claim_next``; ``SKIP LOCKED`` where the backend has it);
3. **recomputed**: its rows are replaced by the GROUP BY of its source (storage/write/rollups.py);
4. **finished**: its parent's marker is bumped, so the level above recomputes it in turn;
5. **released**: its marker is deleted if its version is still the one claimed; a bump since (a late
   event) keeps it, and the next run recomputes the bucket again.

A bucket the database refuses (3 fails for good) is **set aside** instead: its marker waits with a
retry time while the level goes on (the runner's ``_set_aside``).

The strategies differ in the transactions that carry steps 2 to 5:

* :class:`OneTransaction`: all of them in one transaction, one bucket or a batch of them;
* :class:`ReleasedAfterCommit` (Citus): 2 to 4 in one, 5 in the next, once the rows are committed on
  every node; a token held meanwhile tells this run's marker from one an ingest made again;
* :class:`InPieces` (SQLite): the GROUP BY staged outside the write lock, then written a piece per
  transaction under a token (storage/write/staged.py); a bucket whose marker changes hands between the
  pieces goes to :class:`OneTransaction`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from trend.errors import DatabaseUnavailableError, StorageError, TransactionAbortedError
from trend.logging import LogTime, get_logger
from trend.model import Level
from trend.rollup.shell import ActiveRun
from trend.storage.engine import Database, Pinned, Tx
from trend.storage.shared.markers import Failing, claim_next, claim_some, mark, release, take
from trend.storage.write.rollups import Recomputed, recompute_many
from trend.storage.write.staged import PIECE_PAUSE_S, Staged, stage, still_taken, unstage, write_piece

log = get_logger("rollup")

Done = list[tuple[int, Recomputed]]  # the buckets written, in bucket order, with what each held


@dataclass
class Walk:
    """One run's walk over the dirty buckets: the cursor moves past each bucket it processed or set
    aside, so a run visits a bucket at most once."""

    active: ActiveRun
    cutoff: int
    now: int
    after: int = -(2**62)
    retried: set[int] = field(default_factory=set)  # buckets that had failed before this run
    failures: list[Failing] = field(default_factory=list)
    failed_now: int | None = None


class BucketFailedError(Exception):
    """The database refused a bucket's recompute: it would refuse it again."""

    def __init__(self, bucket: int, cause: StorageError) -> None:
        self.bucket = bucket
        self.cause = cause
        super().__init__(str(cause))


def refused(exc: StorageError) -> bool:
    """Whether the database refused the work itself (it would refuse it again), rather than being
    unreachable or undoing a transaction in a conflict: only such a bucket is set aside."""
    return not isinstance(exc, DatabaseUnavailableError | TransactionAbortedError)


class OneTransaction:
    """Claim, recompute, finish and release up to ``batch`` buckets in one transaction."""

    def __init__(self, db: Database, level: Level) -> None:
        self.db = db
        self.level = level

    def write(self, walk: Walk, batch: int) -> Done:
        """The next buckets; when several failed together, the first alone, to find the one the
        database refuses (a BucketFailedError)."""
        try:
            return self.db.retrying(lambda: self._write(walk, batch))
        except BucketFailedError:
            if batch == 1:
                raise
        return self.db.retrying(lambda: self._write(walk, 1))

    def _write(self, walk: Walk, batch: int) -> Done:
        claimed: list[tuple[int, int]] = []
        try:
            with self.db.write() as tx:
                claimed.extend(claim_some(tx, self.level.name, walk.after, walk.cutoff, batch, walk.now))
                if not claimed:
                    return []
                results = recompute_many(tx, self.level, [bucket for bucket, _ in claimed])
                self._before_finish(tx, claimed)
                self.finish(tx, claimed)
                walk.active.beat(tx)
        except StorageError as exc:  # translated as the transaction ended: it rolled back
            if claimed and refused(exc):
                raise BucketFailedError(claimed[0][0], exc) from exc
            raise
        self._after_commit(claimed)
        return [(bucket, results[bucket]) for bucket, _ in claimed]

    def _before_finish(self, tx: Tx, claimed: list[tuple[int, int]]) -> None:
        """Inside the transaction, after the recompute."""

    def _after_commit(self, claimed: list[tuple[int, int]]) -> None:
        """After the transaction has committed."""

    def finish(self, tx: Tx, claimed: list[tuple[int, int]]) -> None:
        """Steps 4 and 5: the buckets' parents are marked, and their markers released."""
        parents: dict[str, set[int]] = {}
        for bucket, _ in claimed:
            parent = tx.levels.parent_bucket(self.level, bucket)
            if parent is not None:
                parents.setdefault(parent[0].name, set()).add(parent[1])
        for level, buckets in parents.items():
            mark(tx, level, buckets)
        self.release(tx, claimed)

    def release(self, tx: Tx, claimed: list[tuple[int, int]]) -> None:
        for bucket, version in claimed:
            release(tx, self.level.name, bucket, version)


class ReleasedAfterCommit(OneTransaction):
    """Markers released in a transaction after the one that wrote the rows: until it, reads keep
    answering from raw events (Citus, whose commit reaches the workers' shards after the coordinator's)."""

    def _before_finish(self, tx: Tx, claimed: list[tuple[int, int]]) -> None:
        # A token meanwhile, so that a marker another runner released and an ingest made again at the
        # version read is never taken for this one.
        claimed[:] = [(bucket, take(tx, self.level.name, bucket, version) or version) for bucket, version in claimed]

    def release(self, tx: Tx, claimed: list[tuple[int, int]]) -> None:
        """Not yet: :meth:`_after_commit` does, once the rows are committed everywhere."""

    def _after_commit(self, claimed: list[tuple[int, int]]) -> None:
        if claimed:
            with self.db.write() as tx:
                super().release(tx, claimed)


class InPieces:
    """A bucket staged outside the write lock, then written a piece per transaction (SQLite); a bucket
    that changes hands between the pieces, or that the database refuses, goes to ``whole``."""

    def __init__(self, db: Database, level: Level, whole: OneTransaction) -> None:
        self.db = db
        self.level = level
        self.whole = whole

    def write(self, walk: Walk, batch: int) -> Done:
        done = self._staged(walk)
        return self.whole.write(walk, batch) if done is None else done

    def _staged(self, walk: Walk) -> Done | None:
        """Take the marker, stage the bucket's rows in a snapshot taken after that, then write them a
        piece per transaction. None when the marker changed hands, or when the database refused the
        bucket: one transaction then settles it, or sets it aside."""
        with self.db.pinned() as session:
            with session.read() as tx:  # a read first: finding nothing left takes no write lock
                claimed = claim_next(tx, self.level.name, walk.after, walk.cutoff, walk.now)
            if claimed is None:
                return []
            with session.write() as tx:
                token = take(tx, self.level.name, *claimed)
            if token is None:
                return None  # bumped since the read: one transaction settles it
            try:
                with session.read() as tx:
                    staged = stage(tx, self.level, claimed[0], token)
                return self._write_pieces(session, walk.active, staged)
            except StorageError as exc:
                if not refused(exc):
                    raise
                return None
            finally:
                # A 1h bucket's staged rows are megabytes: they should not outlive the bucket in the pool.
                with session.read() as tx:
                    unstage(tx, self.level)

    def _write_pieces(self, session: Pinned, active: ActiveRun, staged: Staged) -> Done | None:
        for piece in range(staged.pieces):
            if piece:
                time.sleep(PIECE_PAUSE_S)
            with session.write() as tx:
                if not still_taken(tx, staged):
                    log.debug("%s bucket %s changed hands after its stage; recomputing it in one transaction",
                              self.level.name, LogTime(staged.bucket))
                    return None
                write_piece(tx, staged, piece)
                if piece == staged.pieces - 1:
                    self.whole.finish(tx, [(staged.bucket, staged.token)])
                active.beat(tx)
        return [(staged.bucket, staged.result)]


WriteStrategy = OneTransaction | InPieces


def strategy_for(db: Database, level: Level, *, whole_buckets: bool = False) -> WriteStrategy:
    """The backend's way of writing ``level``'s buckets, from its capabilities. ``whole_buckets``: never
    in pieces (a catch-up with no app writing beside it)."""
    caps = db.dialect.caps
    whole = ReleasedAfterCommit(db, level) if caps.release_after_commit else OneTransaction(db, level)
    return InPieces(db, level, whole) if caps.staged_rollups and not whole_buckets else whole
