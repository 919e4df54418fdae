"""One run of one level: skip check, catch-up loop, the seed's log lines, and a run record.

Every dirty closed bucket is processed oldest first, each in its own short transaction, so a run
that was missed, misfired or interrupted only delays work: the markers remember what is left.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from trend.clock import Clock
from trend.errors import StorageError
from trend.logging import get_logger
from trend.model import Level, format_utc
from trend.storage.engine import Database
from trend.storage.markers import any_dirty, backlog, claim_next, mark, release
from trend.storage.rollups import parent_of, recompute
from trend.storage.runs import RunRecord, finish_run, record_run, start_run

log = get_logger("rollup")

RUNNER_ID = f"{socket.gethostname()}:{os.getpid()}"
OVERLAP_WARNING = "Previous aggregation still running, skipping..."

# In-process overlap guard, one per database and level; across processes the markers decide.
_guards: dict[tuple[str, str], threading.Lock] = {}
_guards_lock = threading.Lock()


def _guard(db: Database, level: Level) -> threading.Lock:
    with _guards_lock:
        return _guards.setdefault((db.url, level.name), threading.Lock())


@dataclass(frozen=True)
class RunReport:
    level: str  # the level, or "retention"
    outcome: str  # ran | skipped_no_data | skipped_running | failed
    buckets: int = 0
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def job(self) -> str:
        return self.level if self.level == "retention" else f"agg_{self.level}"


class LevelRunner:
    def __init__(self, db: Database, clock: Clock, level: Level,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_report: Callable[[RunReport], None] | None = None, yield_ratio: float = 0.0) -> None:
        self.db = db
        self.clock = clock
        self.level = level
        self.should_stop = should_stop
        self._on_report = on_report
        self.yield_ratio = yield_ratio

    @property
    def job(self) -> str:
        return f"agg_{self.level.name}"

    def run(self) -> RunReport:
        guard = _guard(self.db, self.level)
        if not guard.acquire(blocking=False):
            log.warning(OVERLAP_WARNING)
            return self._report(RunReport(self.level.name, "skipped_running"))
        try:
            return self._report(self._run())
        finally:
            guard.release()

    def _report(self, report: RunReport) -> RunReport:
        if self._on_report is not None:
            self._on_report(report)
        return report

    def _run(self) -> RunReport:
        started_ms, started = self.clock.now_ms(), time.perf_counter()
        cutoff = self.level.closed_cutoff(started_ms)
        try:
            with self.db.probe() as conn:
                has_work = any_dirty(conn, self.level.name, cutoff)
            if not has_work:
                log.debug("No events for bucket %s, skipping aggregation", format_utc(cutoff))
                self._record(started_ms, "skipped_no_data")
                return RunReport(self.level.name, "skipped_no_data", seconds=time.perf_counter() - started)
            return self._catch_up(started_ms, started, cutoff)
        except StorageError as exc:
            log.error("%s aggregation failed: %s", self.level.name, exc)
            self._record(started_ms, "failed", error=str(exc))
            return RunReport(self.level.name, "failed", seconds=time.perf_counter() - started, error=str(exc))

    def _catch_up(self, started_ms: int, started: float, cutoff: int) -> RunReport:
        with self.db.read() as conn:
            pending = backlog(conn, self.level.name, cutoff)
        with self.db.write() as conn:
            run_id = start_run(conn, self.job, RUNNER_ID, started_ms)
        summary = pending.dirty > 1
        if summary:
            log.info("Starting %s aggregation catch-up: %d buckets from %s to %s", self.level.name,
                     pending.dirty, format_utc(pending.oldest or cutoff), format_utc(pending.newest or cutoff))
        buckets = rows = 0
        last = -(2**62)
        error: str | None = None
        try:
            while not self.should_stop():
                began = time.perf_counter()
                done = self._process_next(last, cutoff, detailed=not summary)
                if done is None:
                    break
                last, bucket_rows = done
                buckets += 1
                rows += bucket_rows
                if self.yield_ratio:
                    # A catch-up must not starve the app of CPU: pause in proportion to the work just done.
                    time.sleep((time.perf_counter() - began) * self.yield_ratio)
        except StorageError as exc:
            error = str(exc)
            log.error("%s aggregation failed after %d buckets: %s", self.level.name, buckets, exc)
        seconds = time.perf_counter() - started
        outcome = "failed" if error else "ran"
        if summary and not error:
            log.info("%s aggregation completed: %d rows in %.2fs (%d buckets)", self.level.name, rows, seconds,
                     buckets)
        self._finish(run_id, outcome, buckets, rows, error)
        return RunReport(self.level.name, outcome, buckets, rows, seconds, error)

    def _process_next(self, after: int, cutoff: int, *, detailed: bool) -> tuple[int, int] | None:
        """Recompute the next dirty closed bucket in one transaction; None when none is left."""
        began = time.perf_counter()
        with self.db.write() as conn:
            claimed = claim_next(self.db, conn, self.level.name, after, cutoff)
            if claimed is None:
                return None
            bucket, version = claimed
            result = recompute(conn, self.level, bucket)
            parent = parent_of(self.level, bucket)
            if parent is not None:
                mark(self.db, conn, parent[0].name, [parent[1]])
            release(conn, self.level.name, bucket, version)
        line = log.info if detailed else log.debug
        line("Starting %s aggregation for bucket: %s (%d events)", self.level.name, format_utc(bucket),
             result.events)
        line("%s aggregation completed: %d rows in %.2fs", self.level.name, result.rows,
             time.perf_counter() - began)
        return bucket, result.rows

    def _record(self, started_ms: int, outcome: str, error: str | None = None) -> None:
        try:
            with self.db.write() as conn:
                record_run(conn, RunRecord(self.job, RUNNER_ID, started_ms, self.clock.now_ms(), outcome, 0, 0,
                                           error))
        except StorageError as exc:
            log.warning("could not record the %s run: %s", self.job, exc)

    def _finish(self, run_id: int, outcome: str, buckets: int, rows: int, error: str | None) -> None:
        try:
            with self.db.write() as conn:
                finish_run(conn, run_id, self.clock.now_ms(), outcome, buckets, rows, error)
        except StorageError as exc:
            log.warning("could not record the end of the %s run: %s", self.job, exc)
