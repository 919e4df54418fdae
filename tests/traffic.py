"""Concurrent traffic on one database: ingesters and runners on threads, each with a Trend (its own
pool) of its own, as replicas would be. What every ingester had acknowledged is kept, so a test can
compare the tables with exactly that."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from tests.reference import closed_markers, differing_levels, stored_events
from trend.clock import SystemClock
from trend.errors import StorageError
from trend.model import MINUTE_MS
from trend.service import Trend


def small_batch(rng: random.Random, now_ms: int, minutes: int, keys: int, prefix: str) -> list[dict[str, Any]]:
    """A few events in the last closed ``minutes``, over ``keys`` keys (so over every shard). Each has
    an event_id, so a batch sent again after an error counts once, whatever the error hid."""
    return [{"event": rng.choice(["search", "view"]), "key": f"k{rng.randrange(keys)}",
             "user_id": f"u{rng.randrange(50)}", "event_id": f"{prefix}-{rng.getrandbits(64):x}",
             "ts": (now_ms - MINUTE_MS * rng.uniform(1, minutes)) / 1000} for _ in range(rng.randint(5, 40))]


class Traffic:
    def __init__(self, url: str, *, ingesters: int, runners: int, seed: int = 1, minutes: int = 6, keys: int = 60,
                 pause_s: float = 0.0) -> None:
        self.url = url
        self.acknowledged: list[dict[str, Any]] = []
        self.errors: list[str] = []  # refusals and failed runs, which traffic survives
        self.crashed: list[BaseException] = []  # threads that stopped on an error
        self.ingests = 0
        self.runs = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_ingesting = threading.Event()
        self._trends: list[Trend] = []
        self._ingesters = ingesters
        self._threads = [self._thread(partial(self._ingest, seed + n, minutes, keys, pause_s))
                         for n in range(ingesters)]
        self._threads += [self._thread(self._roll) for _ in range(runners)]
        for thread in self._threads:
            thread.start()

    def _thread(self, body: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                body()
            except BaseException as exc:  # reported by the test through self.crashed
                self.crashed.append(exc)

        return threading.Thread(target=guarded, daemon=True)

    def _trend(self) -> Trend:
        trend = Trend(database_url=self.url, worker_enabled=False, worker_yield_ratio=0.0, clock=SystemClock(),
                      log_level="ERROR")
        with self._lock:
            self._trends.append(trend)
        return trend

    def _ingest(self, seed: int, minutes: int, keys: int, pause_s: float) -> None:
        trend, rng = self._trend(), random.Random(seed)
        while not self._stop_ingesting.is_set():
            events = small_batch(rng, trend.clock.now_ms(), minutes, keys, f"s{seed}")
            self._keep_going(partial(trend.ingest, events))
            with self._lock:
                self.acknowledged.extend(events)
                self.ingests += 1
            time.sleep(pause_s)

    def _roll(self) -> None:
        trend = self._trend()
        while not self._stop.is_set():
            for report in trend.rollup():
                if report.outcome == "failed":
                    with self._lock:
                        self.errors.append(report.error or "")
            with self._lock:
                self.runs += 1

    def _keep_going(self, call: Callable[[], object]) -> None:
        """An ingest the database refused is sent again, as a client would; acknowledged once stored."""
        for _ in range(50):
            try:
                call()
                return
            except StorageError as exc:
                with self._lock:
                    self.errors.append(str(exc))
                time.sleep(0.1)
        raise AssertionError(f"an ingest kept failing: {self.errors[-1]}")

    def stop_ingesting(self) -> None:
        """The ingesters stop after their batch in flight; the runners go on."""
        self._stop_ingesting.set()
        for thread in self._threads[:self._ingesters]:
            thread.join(120)

    def stop(self) -> None:
        self._stop_ingesting.set()
        self._stop.set()
        for thread in self._threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in self._threads), "a traffic thread did not stop"
        for trend in self._trends:
            trend.close()


@dataclass(frozen=True)
class SoakOutcome:
    ingests: int
    crashed: list[BaseException]
    settled: bool  # the runners cleared every closed bucket's marker by themselves
    differences: list[str]  # levels whose closed buckets differ from the GROUP BY of the raw events


def soak(url: str, seconds: float, *, ingesters: int = 4, runners: int = 2) -> SoakOutcome:
    """Small batches into the last three minutes from ``ingesters`` threads while ``runners`` threads
    run every level in a loop; then the ingesters stop and the runners alone must settle everything."""
    with Trend(database_url=url, worker_enabled=False, clock=SystemClock(), log_level="ERROR") as observer:
        observer.db.ensure_schema()
        traffic = Traffic(url, ingesters=ingesters, runners=runners, minutes=3, keys=40)
        try:
            time.sleep(seconds)
            traffic.stop_ingesting()
            now = observer.clock.now_ms()
            deadline = time.monotonic() + 60
            while closed_markers(observer, now) and time.monotonic() < deadline:
                time.sleep(0.2)
            settled = not closed_markers(observer, now)
        finally:
            traffic.stop()
        return SoakOutcome(traffic.ingests, traffic.crashed, settled,
                           differing_levels(observer, stored_events(observer), now))
