"""The shell every job runs in: the overlap guard, the run record and its lease, and the report.

Outcomes, used everywhere (``--json``, ``status``, metrics labels, docs):

* ``ran``: the job did its work.
* ``skipped_no_data``: nothing was due.
* ``skipped_running``: a run of the same job is still going in this process (the seed's WARNING).
* ``skipped_claimed``: the work is held by a live run in another process.
* ``interrupted``: asked to stop (SIGTERM) with work left; the markers keep what is left.
* ``abandoned``: a run whose process died; the next run of the job closes its record.
* ``failed``: the database failed, or refused a bucket (set aside to be tried again; the others
  went on), or the job's own code raised.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from trend.clock import Clock
from trend.errors import StorageError
from trend.logging import get_logger
from trend.storage.engine import Database, Tx
from trend.storage.write.runs import RunRecord, close_as, finish_run, heartbeat, record_run, running, start_run

log = get_logger("rollup")

OUTCOMES = ("ran", "skipped_no_data", "skipped_running", "skipped_claimed", "interrupted", "abandoned", "failed")
HOST = socket.gethostname()
RUNNER_ID = f"{HOST}:{os.getpid()}"
OVERLAP_WARNING = "Previous aggregation still running, skipping..."
# A running record without a heartbeat for this long belongs to a dead runner. Heartbeats come with
# every bucket; on this host a dead process is recognised at once by its pid.
LEASE_MS = 10 * 60_000

class _Recorder:
    """One thread that writes run records handed to it, so a skipping run never waits for a writer."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="trend-run-records", daemon=True)
                self._thread.start()
        self._tasks.put(task)

    def _work(self) -> None:
        while True:
            self._tasks.get()()


_recorder = _Recorder()
_guards: dict[tuple[str, str], threading.Lock] = {}
_guards_lock = threading.Lock()


def guard(db: Database, job: str) -> threading.Lock:
    """The in-process overlap guard of one job on one database."""
    with _guards_lock:
        return _guards.setdefault((db.url, job), threading.Lock())


@dataclass(frozen=True)
class RunReport:
    level: str  # the level's name, or the job's id for jobs that are not levels
    job: str
    outcome: str
    buckets: int = 0
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Result:
    """What a job's work reports to its shell."""

    outcome: str
    buckets: int = 0
    rows: int = 0
    error: str | None = None


def _process_alive(runner: str) -> bool:
    host, _, pid = runner.rpartition(":")
    if host != HOST or not pid.isdigit():
        return True  # another host: only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(record: RunRecord, now_ms: int) -> bool:
    """Whether the runner of a ``running`` record may still be working."""
    if record.runner == RUNNER_ID:
        return False  # this process holds the guard, so its own open record is a leftover
    beat = record.heartbeat if record.heartbeat is not None else record.started
    return now_ms - beat < LEASE_MS and _process_alive(record.runner)


class ActiveRun:
    """A run in progress: its record, its heartbeat, and whether it has been asked to stop."""

    def __init__(self, clock: Clock, run_id: int, should_stop: Callable[[], bool]) -> None:
        self.clock = clock
        self.run_id = run_id
        self.should_stop = should_stop

    def beat(self, tx: Tx) -> None:
        """Renew the lease inside the caller's transaction."""
        heartbeat(tx, self.run_id, self.clock.now_ms())


class RunShell:
    """Runs one job's work with the guard, the record and the report around it."""

    def __init__(self, db: Database, clock: Clock, job: str, label: str,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_report: Callable[[RunReport], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.job = job
        self.label = label
        self.should_stop = should_stop
        self._on_report = on_report
        # How log lines name the job: the seed's "1m aggregation", or the job's id.
        self.title = job if job == label else f"{label} aggregation"

    def run(self, work: Callable[[ActiveRun], Result], precheck: Callable[[], Result | None] | None = None
            ) -> RunReport:
        """``precheck`` may settle the run before a record is opened (skip paths); ``work`` does the rest."""
        lock = guard(self.db, self.job)
        if not lock.acquire(blocking=False):
            log.warning(OVERLAP_WARNING)
            return self._report(Result("skipped_running"), 0.0)
        began, started_ms = time.perf_counter(), self.clock.now_ms()
        try:
            result = precheck() if precheck is not None else None
            if result is not None and result.outcome == "skipped_claimed":
                # The holder may own SQLite's write lock for a whole bucket: record without waiting for it.
                _recorder.submit(partial(self._record_closed, started_ms, result))
            elif result is not None:
                self._record_closed(started_ms, result)
            else:
                result = self._open_and_work(work, started_ms)
        except StorageError as exc:
            log.error("%s failed: %s", self.title, exc)
            result = Result("failed", error=str(exc))
            self._record_closed(started_ms, result)
        finally:
            lock.release()
        return self._report(result, time.perf_counter() - began)

    def live_elsewhere(self, tx: Tx) -> RunRecord | None:
        """A live run of this job in another process, if any: a read, so it never waits on a writer."""
        now = self.clock.now_ms()
        return next((r for r in running(tx, self.job) if is_live(r, now)), None)

    def _open_and_work(self, work: Callable[[ActiveRun], Result], started_ms: int) -> Result:
        with self.db.write() as tx:
            now = self.clock.now_ms()
            dead = [r.id for r in running(tx, self.job) if r.id is not None and not is_live(r, now)]
            if close_as(tx, dead, "abandoned", now, "the runner stopped without closing this run"):
                log.warning("closed %d %s run(s) whose runner is gone as abandoned", len(dead), self.job)
            run_id = start_run(tx, self.job, RUNNER_ID, started_ms)
        try:
            result = work(ActiveRun(self.clock, run_id, self.should_stop))
        except StorageError as exc:
            result = Result("failed", error=str(exc))
            log.error("%s failed: %s", self.title, exc)
        except Exception as exc:  # a bug: the run is still closed as failed, never left "running"
            result = Result("failed", error=f"{type(exc).__name__}: {exc}")
            log.exception("%s failed", self.title)
        self._finish(run_id, result)
        return result

    def _record_closed(self, started_ms: int, result: Result) -> None:
        try:
            with self.db.write() as tx:
                record_run(tx, RunRecord(self.job, RUNNER_ID, started_ms, self.clock.now_ms(), result.outcome,
                                         result.buckets, result.rows, result.error))
        except StorageError as exc:
            log.warning("could not record the %s run: %s", self.job, exc)

    def _finish(self, run_id: int, result: Result) -> None:
        try:
            with self.db.write() as tx:
                finish_run(tx, run_id, self.clock.now_ms(), result.outcome, result.buckets, result.rows, result.error)
        except StorageError as exc:
            log.warning("could not record the end of the %s run: %s", self.job, exc)

    def _report(self, result: Result, seconds: float) -> RunReport:
        report = RunReport(self.label, self.job, result.outcome, result.buckets, result.rows, seconds, result.error)
        if self._on_report is not None:
            self._on_report(report)
        return report
