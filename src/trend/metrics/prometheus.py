"""The Prometheus registry of one ``Trend``: its counters, its histogram, and the gauges read from
the database at scrape time. Made on first use (trend/metrics/__init__.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from trend.errors import StorageError
from trend.ingest import IngestResult
from trend.model import Hierarchy
from trend.rollup.service import LevelStatus
from trend.rollup.shell import OUTCOMES, RunReport
from trend.storage.dialects import BarrierWaits


class _BacklogCollector(Collector):
    def __init__(self, status: Callable[[], Sequence[LevelStatus]], levels: Hierarchy,
                 failing_rules: Callable[[], int], barrier: Callable[[], BarrierWaits | None] | None = None) -> None:
        self._status = status
        self._levels = levels
        self._failing_rules = failing_rules
        self._barrier = barrier

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("trend_database_up", "1 when the database answered this scrape")
        try:
            statuses = self._status()
        except StorageError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        backlog = GaugeMetricFamily("trend_backlog_buckets", "Dirty buckets waiting per level", labels=["level"])
        lag = GaugeMetricFamily("trend_lag_seconds", "How long the oldest closed dirty bucket has waited",
                                labels=["level"])
        # How long a level's buckets are: alert rules compare its lag with it, whatever the levels are.
        width = GaugeMetricFamily("trend_level_width_seconds", "How long one bucket of the level is",
                                  labels=["level"])
        failing_buckets = GaugeMetricFamily(
            "trend_failing_buckets", "Dirty buckets whose last recompute the database refused; each is retried "
            "with backoff while the rest of the level goes on", labels=["level"])
        for status in statuses:
            backlog.add_metric([status.level], status.backlog.dirty)
            failing_buckets.add_metric([status.level], status.backlog.failing)
            lag.add_metric([status.level], status.lag_ms / 1000)
            width.add_metric([status.level], self._levels.by_name[status.level].width / 1000)
        yield backlog
        yield failing_buckets
        yield lag
        yield width
        if self._barrier is not None:
            waits = self._barrier()
            if waits is not None:
                longest = GaugeMetricFamily("trend_citus_barrier_longest_wait_seconds",
                                            "The longest a run of this process waited at Citus's commit barrier")
                longest.add_metric([], waits.longest_s)
                yield longest
                timeouts = CounterMetricFamily("trend_citus_barrier_timeouts",
                                               "Runs of this process that gave up waiting at the commit barrier")
                timeouts.add_metric([], waits.timeouts)
                yield timeouts
        failing = GaugeMetricFamily("trend_alert_rules_failing", "Alert rules whose last evaluation failed")
        failing.add_metric([], self._failing_rules())
        yield failing


class Instruments:
    def __init__(self, status: Callable[[], Sequence[LevelStatus]], levels: Hierarchy, jobs: Sequence[str],
                 failing_rules: Callable[[], int] = lambda: 0,
                 barrier: Callable[[], BarrierWaits | None] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("trend_events", "Events by ingest result", ["result"], registry=self.registry)
        # "trend_job", not "job": Prometheus sets "job" on every target and would rename ours "exported_job".
        self.runs = Counter("trend_job_runs", "Job runs by outcome", ["trend_job", "outcome"],
                            registry=self.registry)
        self.run_seconds = Histogram("trend_job_run_seconds", "Job run durations", ["trend_job"],
                                     registry=self.registry,
                                     buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        # Overload: each request of a class admitted at once, after a wait, or refused (and why).
        self.admission = Counter("trend_admission", "Requests by class and what admission did with them",
                                 ["request_class", "outcome", "reason"], registry=self.registry)
        self._backlog = _BacklogCollector(status, levels, failing_rules, barrier)
        self.registry.register(self._backlog)
        # Every series exists from the start, so increase(...[5m]) sees a job's first failure.
        for job in jobs:
            for outcome in OUTCOMES:
                self.runs.labels(job, outcome)
        for result in ("accepted", "duplicate", "rejected"):
            self.events.labels(result)
        for request_class in ("reads", "writes"):
            self.admission.labels(request_class, "admitted", "")
            self.admission.labels(request_class, "shed", "rate")
        self.admission.labels("reads", "queued", "")
        for reason in ("queue_full", "queue_timeout"):
            self.admission.labels("reads", "shed", reason)

    def on_ingest(self, result: IngestResult) -> None:
        self.events.labels("accepted").inc(result.accepted)
        self.events.labels("duplicate").inc(result.duplicates)
        self.events.labels("rejected").inc(result.rejected)

    def on_admission(self, request_class: str, outcome: str, reason: str) -> None:
        self.admission.labels(request_class, outcome, reason).inc()

    def on_report(self, report: RunReport) -> None:
        self.runs.labels(report.job, report.outcome).inc()
        self.run_seconds.labels(report.job).observe(report.seconds)

    def render(self) -> bytes:
        return generate_latest(self.exposed())

    def exposed(self) -> CollectorRegistry:
        """What /metrics shows: this process's registry or, under PROMETHEUS_MULTIPROC_DIR, the
        counters and histograms summed over every process's files; the gauges read the database."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        summed = CollectorRegistry()
        MultiProcessCollector(summed)  # type: ignore[no-untyped-call]
        summed.register(self._backlog)
        return summed

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """/metrics on its own port (prometheus-client's server, in a thread): for ``trend worker``,
        which has no API. Returns what stops it."""
        server, thread = start_http_server(port, host, registry=self.exposed())

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
