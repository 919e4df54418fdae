"""The embedding facade: one object that owns the database, ingest, rollups and the worker."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from trend.clock import Clock, SystemClock
from trend.config import Settings, load_settings_of
from trend.errors import QueryError, StorageError
from trend.keys import normalizer
from trend.logging import configure_logging, get_logger
from trend.metrics import Metrics
from trend.model import ALERTS_JOB, LEVELS, RETENTION_JOB, Hierarchy
from trend.parts import OnFirstUse
from trend.query.trends import Queries, Rising, Series, Top
from trend.storage.engine import Database
from trend.storage.read.cluster import Cluster, cluster_state
from trend.storage.write.events import Erased, erase_user, newest_minute
from trend.storage.write.runs import RunRecord, latest_runs

if TYPE_CHECKING:
    from fastapi import APIRouter

    from trend.alerts.service import Alerts
    from trend.ingest import Ingestor, IngestResult
    from trend.rollup.retention import Retention
    from trend.rollup.service import LevelStatus, Rollups
    from trend.rollup.shell import RunReport
    from trend.storage.shared.markers import Failing
    from trend.worker.scheduler import Job, JobInfo, Worker

log = get_logger("rollup")
R = TypeVar("R")
# What a server reads while it starts, per event type (Trend.warm_up): the dashboard's default window,
# and the windows whose full hours the hourly job stores (query/prepared.py).
WARM_WINDOWS = ("1h", "24h", "6h", "7d")


class Trend:
    """``Trend()`` reads ``TREND_*``; pass ``settings`` or keyword overrides to configure it in code.

    >>> t = Trend(database_url="sqlite:///trend.db")      # doctest: +SKIP
    >>> t.ingest([{"event": "search", "key": "우산"}])      # doctest: +SKIP
    """

    # Handed in from above (``from trend import Trend``, or the API layer when it loads), so this facade
    # never imports the API layer above it.
    router_builder: ClassVar[Callable[[Trend], APIRouter] | None] = None

    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None, levels: Hierarchy = LEVELS,
                 **overrides: Any) -> None:
        if settings is not None and settings.hierarchy != levels:
            # Jobs and retentions are per level: the settings of this hierarchy, from the ones given.
            overrides = {**settings.model_dump(exclude_unset=True), **overrides}
            settings = None
        self.settings = settings if settings is not None else load_settings_of(levels, **overrides)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.levels = levels
        configure_logging(self.settings.log_prefix, self.settings.zone, self.settings.log_level,
                          self.settings.log_format)
        # Set by the worker's stop; every run checks it between buckets.
        self.stopping = threading.Event()
        self.db = Database(self.settings.database_url, levels=levels, pool_size=self.settings.worker_threads + 3,
                           key_normalization=self.settings.key_normalization, options=dict(self.settings))
        self.metrics = Metrics(self.status, levels, [*(level.job for level in levels), RETENTION_JOB, ALERTS_JOB],
                               failing_rules=lambda: self.alerts.failing_rules(),
                               barrier=lambda: self.db.dialect.barrier if self.db.dialect.caps.distributed else None)
        self.normalize_key = normalizer(self.settings.key_normalization)
        # Called after this process has stored or deleted events: shared HTTP answers read the change
        # stamp again at once instead of within 100 ms (api/answers.py).
        self.after_write: list[Callable[[], None]] = []
        self.queries = Queries(self.db, self.clock, self.normalize_key)
        self._router: APIRouter | None = None

    # The parts that write, and the worker that runs them, are made (and their modules imported) on first
    # use: a process that only reads, such as `trend top`, loads none of them.

    @OnFirstUse
    def ingestor(self) -> Ingestor:
        from trend.ingest import Ingestor
        from trend.validation import EventValidator

        return Ingestor(self.db, self.clock, EventValidator(self.settings.accepted_lateness, self.normalize_key),
                        on_ingest=self._ingested)

    @OnFirstUse
    def rollups(self) -> Rollups:
        from trend.rollup.service import Rollups

        return Rollups(self.db, self.clock, self.settings.retention_ms("raw"), should_stop=self.stopping.is_set,
                       on_report=self.metrics.on_report)

    @OnFirstUse
    def retention(self) -> Retention:
        from trend.rollup.retention import Retention

        kept = {name: self.settings.retention_ms(name) for name in ("raw", *self.levels.names)}
        return Retention(self.db, self.clock, kept, should_stop=self.stopping.is_set, on_report=self.metrics.on_report)

    @OnFirstUse
    def alerts(self) -> Alerts:
        from trend.alerts.service import Alerts, DeliveryPolicy
        from trend.alerts.webhook import allowed_networks

        settings = self.settings
        policy = DeliveryPolicy(allowed_networks(settings.alert_webhook_allow), settings.alert_timeout_seconds,
                                settings.alert_max_attempts, settings.alert_retry_base)
        return Alerts(self.db, self.clock, self.queries, policy, settings.zone, should_stop=self.stopping.is_set,
                      on_report=self.metrics.on_report)

    @OnFirstUse
    def worker(self) -> Worker:
        from trend.worker.scheduler import Worker

        return Worker(self.settings, self.levels, self._scheduled_jobs(), self.stopping)

    def _scheduled_jobs(self) -> dict[str, Job]:
        """Scheduled runs pause between buckets (TREND_WORKER_YIELD_RATIO) to leave CPU to the app."""
        ratio = self.settings.worker_yield_ratio
        # A bucket the database refused waits for its retry time in scheduled runs; runs a person starts
        # try it again at once (a person may have just removed the cause).
        jobs: dict[str, Job] = {level.job: partial(self.rollups.runner(level.name).run, ratio, retry_waiting=False)
                                for level in self.levels}
        top = self.levels.top
        jobs[top.job] = self._then_prepare(jobs[top.job])
        jobs[RETENTION_JOB] = self.retention.run
        jobs[ALERTS_JOB] = self.alerts.run
        return jobs

    def _ingested(self, result: IngestResult) -> None:
        self.metrics.on_ingest(result)
        if result.accepted:
            self._written()

    def _written(self) -> None:
        for call in self.after_write:
            call()

    def ingest(self, events: Sequence[Any], *, strict: bool = True) -> IngestResult:
        """Store events given as JSON-like dicts. ``strict`` (default): all or nothing."""
        return self.ingestor.ingest(events, strict=strict)

    def rollup(self, level: str = "all", *, whole_buckets: bool = False) -> list[RunReport]:
        """Catch up every dirty closed bucket of ``level`` (a level's name, or all) now, flat out.
        ``whole_buckets``: on SQLite, each bucket in one transaction instead of pieces: faster, but it
        holds the write lock for up to a second per bucket, so only with no app writing meanwhile."""
        names = self.rollups.level_names(level)
        run = partial(self.rollups.run, names, whole_buckets=whole_buckets)
        return self._then_prepare(run)() if self.levels.top.name in names else run()

    def _then_prepare(self, run: Callable[[], R]) -> Callable[[], R]:
        """``run`` (of the top level), then the window totals of the coming hour (query/prepared.py).
        Only a speed-up: a failure is logged, and reads sum the hours themselves meanwhile."""
        def then_prepare() -> R:
            from trend.query.prepared import prepare_window_totals

            reports = run()
            try:
                prepare_window_totals(self.db, self.clock.now_ms())
            except StorageError as error:
                log.warning("Could not store the window totals of the coming hour: %s", error)
            return reports

        return then_prepare

    @property
    def job_ids(self) -> list[str]:
        return list(self.worker.jobs)

    def run_job(self, job: str) -> list[RunReport]:
        """Run one scheduled job now, in this thread, flat out, and wait for it."""
        if job == RETENTION_JOB:
            return [self.retention.run()]
        if job == ALERTS_JOB:
            return [self.alerts.run()]
        level = self.levels.by_job(job)
        if level is None:
            raise KeyError(job)
        run = self.rollups.runner(level.name).run
        return [self._then_prepare(run)() if level is self.levels.top else run()]

    def jobs(self) -> list[JobInfo]:
        """Every scheduled job: whether it is enabled, its schedule and its next run in this process."""
        return self.worker.info()

    @property
    def worker_running(self) -> bool:
        return self.worker.running

    def dimensions(self) -> dict[str, list[str]]:
        """Every event type stored, with its segments."""
        return self.queries.dimensions()

    def erase_user(self, user_id: str) -> Erased:
        """Delete one person's raw events (a privacy request). Their minutes are marked, so reads leave them
        out at once and the next runs recompute every level. Rollup rows older than the raw retention keep
        their counts and their hashed sketch registers, which cannot be turned back into ids."""
        if not user_id or len(user_id) > 128:
            raise QueryError("user_id", "must be 1 to 128 characters")
        if "\x00" in user_id:
            from trend.validation import NUL_MESSAGE

            raise QueryError("user_id", NUL_MESSAGE)

        def attempt() -> Erased:
            with self.db.write() as tx:
                return erase_user(tx, user_id)

        erased = self.db.retrying(attempt)
        self.db.dialect.erased(self.db.engine)
        self._written()
        return erased

    def backfill(self, start_ms: int, end_ms: int) -> list[RunReport]:
        return self.rollups.backfill(start_ms, end_ms)

    def status(self) -> list[LevelStatus]:
        return self.rollups.status()

    def newest_event_minute(self) -> int | None:
        """The minute of the newest stored event, None when there is none."""
        with self.db.probe() as tx:
            return newest_minute(tx)

    def change_stamp(self) -> Hashable:
        """What the data is as of now, in one value: equal stamps mean equal answers (storage/dialects)."""
        with self.db.probe() as tx:
            return tx.dialect.change_stamp(tx.conn)

    def cluster(self) -> Cluster | None:
        """A distributed database's nodes: which answer, their shards, prepared transactions waiting.
        None on a database that is not distributed."""
        self.db.ensure_schema()
        if not self.db.dialect.caps.distributed:
            return None
        with self.db.read() as tx:
            return cluster_state(tx)

    def ping(self) -> None:
        """One round trip to the database; a StorageError when it does not answer."""
        self.db.ping()

    def database_info(self) -> dict[str, str]:
        """Which backend this is and how it sketches distinct users (``trend status`` shows both)."""
        self.db.ensure_schema()
        return {"backend": self.db.dialect.name, "users_sketches": self.db.dialect.caps.users_sketches}

    # -- queries (docs/queries.md); times are ms since the epoch, UTC --

    def series(self, event: str, *, key: str | Sequence[str] | None = None, segment: str | None = None,
               interval: str = "1m", start_ms: int | None = None, end_ms: int | None = None,
               compare: str | None = None) -> Series:
        """Points per bucket: of one key, of up to 5 keys side by side (``key=[...]``), or of every key
        together; ``compare="previous"`` adds the period before, aligned point by point."""
        return self.db.retrying(lambda: self.queries.series(
            event, key=key, segment=segment, interval=interval, start_ms=start_ms, end_ms=end_ms, compare=compare))

    def top(self, event: str, *, segment: str | None = None, window: str = "1h", at_ms: int | None = None,
            limit: int = 10, by: str = "count") -> Top:
        """Keys by ``by`` (``count`` or ``users``) over the window ending at ``at``, with rank changes."""
        return self.db.retrying(lambda: self.queries.top(event, segment=segment, window=window, at_ms=at_ms,
                                                         limit=limit, by=by))

    def rising(self, event: str, *, segment: str | None = None, window: str = "15m", baseline: int = 12,
               min_count: int = 5, at_ms: int | None = None, limit: int = 10, by: str = "count",
               score: str = "poisson") -> Rising:
        """Keys that rise now against the ``baseline`` windows before, by ``score``: ``poisson`` (the
        default: the key's share of the stream, so a surge of everybody moves no key) or ``zscore``
        (the key against its own past only); docs/queries.md has both."""
        return self.db.retrying(lambda: self.queries.rising(
            event, segment=segment, window=window, baseline=baseline, min_count=min_count, at_ms=at_ms, limit=limit,
            by=by, score=score))

    # -- alerts (docs/alerts.md) --

    def add_alert(self, **rule: Any) -> dict[str, Any]:
        """Store a rule (fields in ``alerts/rules.py``); the answer is the only one that shows its ``secret``."""
        return self.alerts.add(rule)

    def alert_rules(self) -> list[dict[str, Any]]:
        return self.alerts.rules()

    def remove_alert(self, rule_id: int) -> bool:
        return self.alerts.remove(rule_id)

    def test_alert(self, rule_id: int) -> dict[str, Any] | None:
        """Send one delivery marked as a test to the rule's webhook now; None for an unknown rule."""
        return self.alerts.test(rule_id)

    def alert_deliveries(self, rule_id: int | None = None, limit: int = 100) -> list[dict[str, Any]] | None:
        """The newest deliveries first: status, attempts, the receiver's last status code, never its body.
        None when ``rule_id`` names no rule."""
        return self.alerts.deliveries(rule_id, limit)

    # -- embedding in an existing FastAPI app --

    @property
    def router(self) -> APIRouter:
        """The whole API as one router: ``app.include_router(trend.router, prefix="/trend")``."""
        if self._router is None:
            if Trend.router_builder is None:
                raise RuntimeError("the API layer is not loaded: use `from trend import Trend`, not trend.service")
            self._router = Trend.router_builder(self)
        return self._router

    def warm_up(self) -> int:
        """What a server does while it starts: the schema, DataSketches, then the top list of each event
        type over WARM_WINDOWS, for at most TREND_WARM_UP_SECONDS (a read begun goes on to its end). The
        reads fill what a process keeps (compiled statements, totals, sketches of the keys shown), so the
        first users' reads cost what the next ones do. Returns how many reads it made."""
        self.db.warm_up()
        # Where reads keep nothing between them (Citus), a warm-up would only delay the start.
        budget = self.settings.warm_up_seconds if self.db.dialect.caps.caches_reads else 0.0
        began = time.perf_counter()
        warmed = 0
        try:
            events = list(self.dimensions()) if budget else []
        except StorageError:
            return 0
        for window in WARM_WINDOWS:
            for event in events:
                if time.perf_counter() - began >= budget:
                    break
                try:
                    self.top(event, window=window)
                except (StorageError, QueryError):
                    continue
                warmed += 1
        if warmed:
            log.info("Warmed up with %d top lists in %.0f ms", warmed, 1000 * (time.perf_counter() - began))
        return warmed

    @asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        """A FastAPI lifespan that runs the worker with the app: ``FastAPI(lifespan=trend.lifespan)``."""
        self.warm_up()
        if self.settings.worker_enabled:
            self.start_worker()
        try:
            yield
        finally:
            self.stop_worker()

    def last_runs(self) -> dict[str, RunRecord]:
        """The newest run record of every job, from any process."""
        with self.db.read() as tx:
            return latest_runs(tx)

    def failing_buckets(self, limit: int = 10) -> list[Failing]:
        """Buckets whose recompute the database refused, oldest first; each is tried again later while
        the rest of its level goes on."""
        return self.rollups.failing(limit)

    def lag_seconds(self) -> float:
        """How long the oldest closed dirty bucket of any level has waited for its run."""
        return max(status.lag_ms for status in self.status()) / 1000

    def start_worker(self) -> None:
        self.worker.start()

    def stop_worker(self, wait: bool = True) -> None:
        if Trend.worker.made(self):  # a process that never used its worker has none to stop
            self.worker.stop(wait=wait)

    def close(self) -> None:
        self.stop_worker()
        self.db.dispose()

    def __enter__(self) -> Trend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
