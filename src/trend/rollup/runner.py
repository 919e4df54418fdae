"""One run of one level: skip check, catch-up loop and the seed's log lines, inside a :class:`RunShell`.

Every dirty closed bucket is processed oldest first, each in its own short transaction (on SQLite,
a few short ones: storage/write/staged.py), so a run that was missed, misfired or interrupted only delays
work: the markers remember what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trend.clock import Clock
from trend.logging import LogTime, get_logger
from trend.model import Level
from trend.rollup.shell import Result, RunReport, RunShell
from trend.rollup.writes import BucketFailedError, Done, Walk, WriteStrategy, strategy_for
from trend.storage.engine import Database
from trend.storage.shared.markers import (
    EVERY_BUCKET,
    Failing,
    any_dirty,
    backlog,
    clear_failures,
    failing,
    record_failure,
)
from trend.storage.shared.schema import SCHEMA_VERSION
from trend.storage.write.migrations import stored_version

log = get_logger("rollup")

# A scheduled run's pause after a bucket is capped, so a slow bucket cannot stall the level for long.
_MAX_PAUSE_S = 5.0
# Where several buckets share a transaction, how long one should take: late events for those buckets
# wait on their markers' row locks meanwhile.
_BATCH_TARGET_S = 0.25
# Buckets that failed before, looked up when a run starts, so one that now succeeds stops waiting.
_RETRIED_AT_MOST = 1_000


class LevelRunner:
    def __init__(self, db: Database, clock: Clock, level: Level,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_report: Callable[[RunReport], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.level = level
        self.shell = RunShell(db, clock, level.job, level.name, should_stop, on_report)

    @property
    def job(self) -> str:
        return self.level.job

    def run(self, yield_ratio: float = 0.0, *, whole_buckets: bool = False, retry_waiting: bool = True) -> RunReport:
        """Catch up every dirty closed bucket. ``yield_ratio``: after each bucket, pause this many times
        its duration (scheduled runs leave CPU to the app; runs a person starts go flat out).
        ``whole_buckets``: each bucket in one transaction, never in pieces (storage/write/staged.py), for a
        catch-up with no app writing beside it. A bucket whose recompute the database refuses waits
        (storage/markers.record_failure), and the run goes on with the next; ``retry_waiting`` takes
        such buckets again at once, even before their retry time."""
        now = self.clock.now_ms()
        cutoff = self.level.closed_cutoff(now)
        if retry_waiting:
            now = EVERY_BUCKET
        strategy = strategy_for(self.db, self.level, whole_buckets=whole_buckets)
        return self.shell.run(lambda active: self._catch_up(Walk(active, cutoff, now), strategy, yield_ratio),
                              precheck=lambda: self._precheck(cutoff, now))

    def _precheck(self, cutoff: int, now: int) -> Result | None:
        with self.db.probe() as tx:
            version = stored_version(tx)
            if version > SCHEMA_VERSION:
                # Rolling upgrade: a newer release migrated the tables; rows this code writes would lack
                # what that release expects (users sketches, for one), so it must not touch them.
                message = (f"the database has schema version {version}, newer than this trend's {SCHEMA_VERSION}; "
                           "this runner refuses to process until it is upgraded")
                log.error("%s aggregation refused: %s", self.level.name, message)
                return Result("failed", error=message)
            if not any_dirty(tx, self.level.name, cutoff, now):
                log.debug("No events for bucket %s, skipping aggregation", LogTime(cutoff))
                return Result("skipped_no_data")
            holder = self.shell.live_elsewhere(tx) if self.db.dialect.caps.exclusive_runs else None
        if holder is not None:
            log.debug("%s aggregation is running in %s, skipping", self.level.name, holder.runner)
            return Result("skipped_claimed")
        return None

    def _catch_up(self, run: Walk, strategy: WriteStrategy, yield_ratio: float) -> Result:
        with self.db.read() as tx:
            pending = backlog(tx, self.level.name, run.cutoff)
            run.retried = {f.bucket for f in failing(tx, self.level.name, limit=_RETRIED_AT_MOST)}
        summary = pending.dirty > 1
        if summary:
            log.info("Starting %s aggregation catch-up: %d buckets from %s to %s", self.level.name,
                     pending.dirty, LogTime(pending.oldest or run.cutoff), LogTime(pending.newest or run.cutoff))
        began = time.perf_counter()
        buckets = rows = 0
        stopped = False
        batch = 1
        while True:
            if run.active.should_stop():
                stopped = True
                break
            batch_began = time.perf_counter()
            done = self._process_next(run, strategy, batch, detailed=not summary)
            if not done and run.failed_now is None:
                break
            run.failed_now = None
            buckets += len(done)
            rows += sum(result.rows for _, result in done)
            took = time.perf_counter() - batch_began
            batch = next_batch(len(done), took, self.db.dialect.caps.buckets_per_transaction) if done else 1
            if yield_ratio:
                # A catch-up must not starve the app of CPU: pause in proportion to the work just done.
                time.sleep(min(_MAX_PAUSE_S, took * yield_ratio))
        outcome = self._outcome(run, buckets, stopped)
        if summary and outcome == "ran":
            log.info("%s aggregation completed: %d rows in %.2fs (%d buckets)", self.level.name, rows,
                     time.perf_counter() - began, buckets)
        elif outcome == "interrupted":
            log.info("%s aggregation interrupted after %d buckets; the rest stays marked", self.level.name, buckets)
        return Result(outcome, buckets, rows, _failures_text(run.failures))

    def _outcome(self, run: Walk, buckets: int, stopped: bool) -> str:
        if stopped:
            with self.db.probe() as tx:
                if any_dirty(tx, self.level.name, run.cutoff, run.now):
                    return "interrupted"
        if run.failures:
            return "failed"
        # Dirty buckets were found, but every one was held by another runner.
        return "ran" if buckets or stopped else "skipped_claimed"

    def _process_next(self, run: Walk, strategy: WriteStrategy, batch: int, *, detailed: bool) -> Done:
        """Recompute the next dirty closed buckets, at most ``batch`` of them; none when none is left,
        or when the next one failed (``run.failed_now``)."""
        began = time.perf_counter()
        try:
            done = strategy.write(run, batch)
        except BucketFailedError as failure:
            self._set_aside(run, failure)
            return []
        if run.retried:
            self._cleared(run, [bucket for bucket, _ in done])
        run.after = done[-1][0] if done else run.after
        line = log.info if detailed else log.debug
        seconds = (time.perf_counter() - began) / max(1, len(done))
        for bucket, result in done:
            line("Starting %s aggregation for bucket: %s (%d events)", self.level.name, LogTime(bucket),
                 result.events)
            line("%s aggregation completed: %d rows in %.2fs", self.level.name, result.rows, seconds)
        return done

    def _set_aside(self, run: Walk, failure: BucketFailedError) -> None:
        """The bucket waits (a minute, doubling up to an hour) and the run goes on after it."""
        now = self.clock.now_ms()
        with self.db.write() as tx:
            recorded = record_failure(tx, self.level.name, failure.bucket, str(failure.cause), now)
        run.after = failure.bucket
        run.failed_now = failure.bucket
        if recorded is not None:
            run.failures.append(recorded)
            log.error("%s aggregation failed for bucket %s (failure %d, retried after %s): %s", self.level.name,
                      LogTime(failure.bucket), recorded.failures, LogTime(recorded.retry_at), failure.cause)

    def _cleared(self, run: Walk, buckets: list[int]) -> None:
        recovered = [bucket for bucket in buckets if bucket in run.retried]
        if recovered:
            with self.db.write() as tx:
                clear_failures(tx, self.level.name, recovered)
            run.retried.difference_update(recovered)


def _failures_text(failures: list[Failing]) -> str | None:
    if not failures:
        return None
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"bucket {LogTime(first.bucket)} failed{more}: {first.error}"



def next_batch(done: int, seconds: float, most: int) -> int:
    """How many buckets the next transaction may take: enough to share its fixed cost, few enough
    to keep it near :data:`_BATCH_TARGET_S`, and at most twice as many as the last."""
    if most <= 1:
        return 1
    fits = int(done * _BATCH_TARGET_S / max(seconds, 1e-3))
    return max(1, min(most, 2 * done, fits))
