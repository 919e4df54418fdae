"""The retention job: raw events and each level's buckets past their retention, oldest first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from trend.clock import Clock
from trend.config import RetentionSettings
from trend.errors import StorageError
from trend.logging import get_logger
from trend.model import LEVELS
from trend.rollup.runner import OVERLAP_WARNING, RUNNER_ID, RunReport
from trend.storage.engine import Database
from trend.storage.retention import delete_level, delete_old_runs, delete_raw
from trend.storage.runs import RunRecord, record_run

log = get_logger("retention")


class Retention:
    def __init__(self, db: Database, clock: Clock, settings: RetentionSettings,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_report: Callable[[RunReport], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.kept = {"raw": settings.raw, "1m": settings.m1, "5m": settings.m5, "1h": settings.h1}
        self.should_stop = should_stop
        self._on_report = on_report
        self._running = threading.Lock()

    def run(self) -> RunReport:
        if not self._running.acquire(blocking=False):
            log.warning(OVERLAP_WARNING)
            return self._report(RunReport("retention", "skipped_running"))
        try:
            return self._report(self._run())
        finally:
            self._running.release()

    def _run(self) -> RunReport:
        started_ms, began = self.clock.now_ms(), time.perf_counter()
        try:
            results = [delete_raw(self.db, started_ms - self.kept["raw"], self.should_stop)]
            results += [delete_level(self.db, level, started_ms - self.kept[level.name], self.should_stop)
                        for level in LEVELS]
            delete_old_runs(self.db, started_ms)
        except StorageError as exc:
            log.error("retention failed: %s", exc)
            report = RunReport("retention", "failed", seconds=time.perf_counter() - began, error=str(exc))
            self._record(started_ms, report)
            return report
        rows = sum(r.rows for r in results)
        skipped = sum(r.skipped_dirty for r in results)
        outcome = "ran" if rows else "skipped_no_data"
        line = log.info if rows or skipped else log.debug
        line("Retention removed %s%s", ", ".join(f"{r.rows} {r.what} rows" for r in results),
             f"; kept {skipped} chunks whose parent is still dirty" if skipped else "")
        report = RunReport("retention", outcome, rows=rows, seconds=time.perf_counter() - began)
        self._record(started_ms, report)
        return report

    def _report(self, report: RunReport) -> RunReport:
        if self._on_report is not None:
            self._on_report(report)
        return report

    def _record(self, started_ms: int, report: RunReport) -> None:
        try:
            with self.db.write() as conn:
                record_run(conn, RunRecord("retention", RUNNER_ID, started_ms, self.clock.now_ms(), report.outcome,
                                           0, report.rows, report.error))
        except StorageError as exc:
            log.warning("could not record the retention run: %s", exc)
