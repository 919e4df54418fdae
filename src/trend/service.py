"""The embedding facade: one object that owns the database, ingest, rollups and the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from trend.clock import Clock, SystemClock
from trend.config import Settings, load_settings
from trend.ingest import Ingestor, IngestResult
from trend.logging import configure_logging
from trend.metrics import Metrics
from trend.query.trends import Queries, Rising, Series, Top
from trend.rollup.retention import Retention
from trend.rollup.runner import RunReport
from trend.rollup.service import LevelStatus, Rollups, level_names
from trend.storage.engine import Database
from trend.storage.runs import RunRecord, latest_runs
from trend.validation import EventValidator
from trend.worker.scheduler import Worker

if TYPE_CHECKING:
    from fastapi import APIRouter


class Trend:
    """``Trend()`` reads ``TREND_*``; pass ``settings`` or keyword overrides to configure it in code.

    >>> t = Trend(database_url="sqlite:///trend.db")      # doctest: +SKIP
    >>> t.ingest([{"event": "search", "key": "우산"}])      # doctest: +SKIP
    """

    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.clock: Clock = clock if clock is not None else SystemClock()
        configure_logging(self.settings.log_prefix, self.settings.zone, self.settings.log_level)
        self.db = Database(self.settings.database_url, pool_size=self.settings.worker_threads + 3,
                           sqlite_busy_timeout_ms=self.settings.sqlite_busy_timeout_ms)
        self.metrics = Metrics(self.status)
        self.ingestor = Ingestor(self.db, self.clock, EventValidator(self.settings.accepted_lateness),
                                 on_ingest=self.metrics.on_ingest)
        self.worker = Worker(self.settings, {
            **{f"agg_{name}": self._level_job(name) for name in ("1m", "5m", "1h")},
            "retention": lambda: self.retention.run(),
        })
        self.rollups = Rollups(self.db, self.clock, self.settings.retention.raw,
                               should_stop=self.worker.stopping.is_set, on_report=self.metrics.on_report,
                               yield_ratio=self.settings.worker_yield_ratio)
        self.retention = Retention(self.db, self.clock, self.settings.retention,
                                   should_stop=self.worker.stopping.is_set, on_report=self.metrics.on_report)
        self.queries = Queries(self.db, self.clock)
        self._router: APIRouter | None = None

    def _level_job(self, level: str) -> Any:
        return lambda: self.rollups.runner(level).run()

    def ingest(self, events: Sequence[Any], *, strict: bool = True) -> IngestResult:
        """Store events given as JSON-like dicts. ``strict`` (default): all or nothing."""
        return self.ingestor.ingest(events, strict=strict)

    def rollup(self, level: str = "all") -> list[RunReport]:
        """Catch up every dirty closed bucket of ``level`` (1m, 5m, 1h or all) now."""
        return self.rollups.run(level_names(level))

    def run_job(self, job: str) -> list[RunReport]:
        """Run one scheduled job now, in this thread, and wait for it."""
        if job == "retention":
            return [self.retention.run()]
        return [self.rollups.runner(job.removeprefix("agg_")).run()]

    def backfill(self, start_ms: int, end_ms: int) -> list[RunReport]:
        return self.rollups.backfill(start_ms, end_ms)

    def status(self) -> list[LevelStatus]:
        return self.rollups.status()

    # -- queries (DESIGN section 4); times are ms since the epoch, UTC --

    def series(self, event: str, *, key: str | None = None, segment: str | None = None, interval: str = "1m",
               start_ms: int | None = None, end_ms: int | None = None) -> Series:
        return self.queries.series(event, key=key, segment=segment, interval=interval, start_ms=start_ms,
                                   end_ms=end_ms)

    def top(self, event: str, *, segment: str | None = None, window: str = "1h", at_ms: int | None = None,
            limit: int = 10) -> Top:
        return self.queries.top(event, segment=segment, window=window, at_ms=at_ms, limit=limit)

    def rising(self, event: str, *, segment: str | None = None, window: str = "15m", baseline: int = 12,
               min_count: int = 5, at_ms: int | None = None, limit: int = 10) -> Rising:
        return self.queries.rising(event, segment=segment, window=window, baseline=baseline, min_count=min_count,
                                   at_ms=at_ms, limit=limit)

    # -- embedding in an existing FastAPI app --

    @property
    def router(self) -> APIRouter:
        """The whole API as one router: ``app.include_router(trend.router, prefix="/trend")``."""
        if self._router is None:
            from trend.api.router import build_router  # the API layer sits above this facade

            self._router = build_router(self)
        return self._router

    @asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        """A FastAPI lifespan that runs the worker with the app: ``FastAPI(lifespan=trend.lifespan)``."""
        self.db.ensure_schema()
        if self.settings.worker_enabled:
            self.start_worker()
        try:
            yield
        finally:
            self.stop_worker()

    def last_runs(self) -> dict[str, RunRecord]:
        """The newest run record of every job, from any process."""
        with self.db.read() as conn:
            return latest_runs(conn)

    def lag_seconds(self) -> float:
        """How long the oldest closed dirty bucket of any level has waited for its run."""
        return max(status.lag_ms for status in self.status()) / 1000

    def start_worker(self) -> None:
        self.worker.start()

    def stop_worker(self, wait: bool = True) -> None:
        self.worker.stop(wait=wait)

    def close(self) -> None:
        self.stop_worker()
        self.db.dispose()

    def __enter__(self) -> Trend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
