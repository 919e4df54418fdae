"""The embedding facade: one object that owns the database, ingest, rollups and the worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trend.clock import Clock, SystemClock
from trend.config import Settings, load_settings
from trend.ingest import Ingestor, IngestResult
from trend.logging import configure_logging
from trend.rollup.runner import RunReport
from trend.rollup.service import LevelStatus, Rollups, level_names
from trend.storage.engine import Database
from trend.validation import EventValidator
from trend.worker.scheduler import Worker


class Trend:
    """``Trend()`` reads ``TREND_*``; pass ``settings`` or keyword overrides to configure it in code.

    >>> t = Trend(database_url="sqlite:///trend.db")      # doctest: +SKIP
    >>> t.ingest([{"event": "search", "key": "우산"}])      # doctest: +SKIP
    """

    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.clock: Clock = clock if clock is not None else SystemClock()
        configure_logging(self.settings.log_prefix, self.settings.zone, self.settings.log_level)
        self.db = Database(self.settings.database_url, pool_size=self.settings.worker_threads + 3)
        self.ingestor = Ingestor(self.db, self.clock, EventValidator(self.settings.accepted_lateness))
        self.worker = Worker(self.settings, {
            f"agg_{name}": self._level_job(name) for name in ("1m", "5m", "1h")
        })
        self.rollups = Rollups(self.db, self.clock, self.settings.retention.raw,
                               should_stop=self.worker.stopping.is_set)

    def _level_job(self, level: str) -> Any:
        return lambda: self.rollups.runner(level).run()

    def ingest(self, events: Sequence[Any], *, strict: bool = True) -> IngestResult:
        """Store events given as JSON-like dicts. ``strict`` (default): all or nothing."""
        return self.ingestor.ingest(events, strict=strict)

    def rollup(self, level: str = "all") -> list[RunReport]:
        """Catch up every dirty closed bucket of ``level`` (1m, 5m, 1h or all) now."""
        return self.rollups.run(level_names(level))

    def backfill(self, start_ms: int, end_ms: int) -> list[RunReport]:
        return self.rollups.backfill(start_ms, end_ms)

    def status(self) -> list[LevelStatus]:
        return self.rollups.status()

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
