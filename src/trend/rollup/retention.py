"""The retention job: raw events and each level's buckets past their retention, oldest first."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from trend.clock import Clock
from trend.logging import get_logger
from trend.model import RETENTION_JOB
from trend.rollup.shell import ActiveRun, Result, RunReport, RunShell
from trend.storage.engine import Database
from trend.storage.retention import delete_level, delete_old_runs, delete_raw

log = get_logger("retention")


class Retention:
    def __init__(self, db: Database, clock: Clock, kept: Mapping[str, int],
                 should_stop: Callable[[], bool] = lambda: False,
                 on_report: Callable[[RunReport], None] | None = None) -> None:
        """``kept``: ms to keep for ``raw`` and for every level of the database's hierarchy."""
        self.db = db
        self.clock = clock
        self.kept = dict(kept)
        self.shell = RunShell(db, clock, RETENTION_JOB, RETENTION_JOB, should_stop, on_report)

    def run(self) -> RunReport:
        return self.shell.run(self._work)

    def _work(self, active: ActiveRun) -> Result:
        now = self.clock.now_ms()
        results = [delete_raw(self.db, now - self.kept["raw"], active.should_stop)]
        results += [delete_level(self.db, level, now - self.kept[level.name], active.should_stop)
                    for level in self.db.levels]
        delete_old_runs(self.db, now)
        rows = sum(r.rows for r in results)
        skipped = sum(r.skipped_dirty for r in results)
        line = log.info if rows or skipped else log.debug
        line("Retention removed %s%s", ", ".join(f"{r.rows} {r.what} rows" for r in results),
             f"; kept {skipped} chunks whose parent is still dirty" if skipped else "")
        if active.should_stop():
            return Result("interrupted", rows=rows)
        return Result("ran" if rows else "skipped_no_data", rows=rows)
