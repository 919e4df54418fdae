"""Prometheus metrics: run durations and outcomes, backlog and lag per level, ingest counts.

Each ``Trend`` has its own registry, so several can live in one process (tests, embedding).
Counters are per process; the backlog and lag are read from the database at scrape time, so they
are the same from every replica.

Under ``uvicorn --workers N`` a scrape reaches one worker process at a time, so per-process counters
would jump between scrapes. With ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus-client's multiprocess
mode), every process writes its counters to files there, and a scrape sums them all.

The registry is made on first use: a process that only reads (``trend top``, a script) never loads
prometheus-client, a tenth of what importing trend and making a ``Trend`` cost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from trend.ingest import IngestResult
    from trend.metrics.prometheus import Instruments
    from trend.model import Hierarchy
    from trend.rollup.service import LevelStatus
    from trend.rollup.shell import RunReport
    from trend.storage.dialects import BarrierWaits

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, status: Callable[[], Sequence[LevelStatus]], levels: Hierarchy, jobs: Sequence[str],
                 failing_rules: Callable[[], int] = lambda: 0,
                 barrier: Callable[[], BarrierWaits | None] | None = None) -> None:
        self._made_with = (status, levels, jobs, failing_rules, barrier)
        self._instruments: Instruments | None = None
        self._lock = threading.Lock()

    @property
    def instruments(self) -> Instruments:
        if self._instruments is None:
            with self._lock:
                if self._instruments is None:
                    from trend.metrics.prometheus import Instruments

                    self._instruments = Instruments(*self._made_with)
        return self._instruments

    @property
    def registry(self) -> CollectorRegistry:
        return self.instruments.registry

    def on_ingest(self, result: IngestResult) -> None:
        self.instruments.on_ingest(result)

    def on_admission(self, request_class: str, outcome: str, reason: str) -> None:
        self.instruments.on_admission(request_class, outcome, reason)

    def on_report(self, report: RunReport) -> None:
        self.instruments.on_report(report)

    def render(self) -> bytes:
        return self.instruments.render()

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """/metrics on its own port (prometheus-client's server, in a thread): for ``trend worker``,
        which has no API. Returns what stops it."""
        return self.instruments.serve(host, port)
