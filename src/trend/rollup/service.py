"""Rollups as a whole: run levels in order, backfill a range, report the backlog."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trend.clock import Clock
from trend.errors import QueryError
from trend.model import MINUTE_MS, Hierarchy, floor_to
from trend.rollup.runner import LevelRunner
from trend.rollup.shell import RunReport
from trend.storage.engine import Database, chunked
from trend.storage.shared.markers import Backlog, Failing, backlog, failing, mark
from trend.storage.write.runs import RunRecord, latest_runs

_MARK_CHUNK = 1_000


@dataclass(frozen=True)
class LevelStatus:
    level: str
    backlog: Backlog  # closed buckets only: an open bucket is not late, it is still filling
    last_run: RunRecord | None
    lag_ms: int  # how long the oldest dirty bucket has been closed and waiting; 0 when none is


class Rollups:
    def __init__(self, db: Database, clock: Clock, raw_retention_ms: int,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_report: Callable[[RunReport], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.raw_retention_ms = raw_retention_ms
        self._runners = {level.name: LevelRunner(db, clock, level, should_stop, on_report) for level in db.levels}

    @property
    def levels(self) -> Hierarchy:
        return self.db.levels

    def runner(self, level: str) -> LevelRunner:
        return self._runners[level]

    def run(self, levels: Sequence[str] | None = None, yield_ratio: float = 0.0, *,
            whole_buckets: bool = False) -> list[RunReport]:
        """Run the given levels (all by default) finest first, so each reads a fresh level below."""
        names = [name for name in self.levels.names if levels is None or name in levels]
        return [self._runners[name].run(yield_ratio, whole_buckets=whole_buckets) for name in names]

    def backfill(self, start_ms: int, end_ms: int) -> list[RunReport]:
        """Mark every minute of [start, end) dirty at the finest level, then run every level."""
        if end_ms <= start_ms:
            raise QueryError("end", "must be after start")
        oldest = self.clock.now_ms() - self.raw_retention_ms
        if start_ms < oldest:
            # Raw events before this are gone; recomputing would wipe rollups that are still right.
            raise QueryError("start", "is older than the raw event retention (TREND_RETENTION__RAW)")
        minutes = range(floor_to(start_ms, MINUTE_MS), end_ms, MINUTE_MS)
        for part in chunked(list(minutes), _MARK_CHUNK):
            with self.db.write() as tx:
                mark(tx, self.levels.finest.name, part)
        return self.run()

    def status(self) -> list[LevelStatus]:
        now = self.clock.now_ms()
        with self.db.read() as tx:
            runs = latest_runs(tx)
            result = []
            for level in self.levels:
                pending = backlog(tx, level.name, level.closed_cutoff(now))
                waiting = 0 if pending.oldest is None else now - (pending.oldest + level.width + level.grace)
                result.append(LevelStatus(level.name, pending, runs.get(level.job), max(0, waiting)))
            return result

    def failing(self, limit: int = 10) -> list[Failing]:
        """Buckets whose recompute the database refused, oldest first: each waits and is tried again."""
        with self.db.read() as tx:
            return failing(tx, limit=limit)

    def level_names(self, choice: str) -> list[str]:
        """``all`` or one level name → the level names to run."""
        if choice == "all":
            return self.levels.names
        if choice not in self.levels.by_name:
            raise QueryError("level", f"expected one of {', '.join([*self.levels.names, 'all'])}; got {choice!r}")
        return [choice]
