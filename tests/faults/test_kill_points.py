"""SIGKILL ``trend serve`` and ``trend worker`` at random points of ingests and runs.

After every kill: an ingest answered 202 is durable, exactly once; a batch whose answer was lost is
all there or not there at all; and the next runs bring every table back to the ground truth.
``TREND_KILL_POINTS`` kill points per process kind and backend (10 + 10; .ci/run sets 4 to stay
within 15 minutes); ``scripts/faults.sh``
runs hundreds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import TrendFactory
from tests.reference import assert_levels_equal, settle, stored_events
from tests.servers import EVERY_SECOND, Served, environment
from trend.clock import SystemClock
from trend.model import MINUTE_MS
from trend.service import Trend

pytestmark = [pytest.mark.faults, pytest.mark.slow]
KILL_POINTS = int(os.environ.get("TREND_KILL_POINTS", "10"))
BATCH = 100


class Ledger:
    """What the clients were told about each batch."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.refused: list[str] = []
        self.unknown: list[str] = []
        self._next = 0
        self._lock = threading.Lock()

    def new_batch(self, rng: random.Random) -> tuple[str, list[dict[str, object]]]:
        with self._lock:
            self._next += 1
            name = f"b{self._next}"
        now = time.time()
        return name, [{"event": "search", "key": f"k{rng.randrange(20)}", "event_id": f"{name}-{n}",
                       "ts": now - rng.uniform(0, 1800)} for n in range(BATCH)]


def _client(url: str, ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            name, events = ledger.new_batch(rng)
            try:
                response = http.post("/v1/events", json=events)
            except httpx.TransportError:
                ledger.unknown.append(name)  # the answer was lost: it may or may not have committed
                return
            (ledger.acked if response.status_code == 202 else ledger.refused).append(name)


def _kill_serve(database_url: str, ledger: Ledger, rng: random.Random) -> None:
    server = Served(database_url, **EVERY_SECOND)
    stop = threading.Event()
    clients = [threading.Thread(target=_client, args=(server.url, ledger, random.Random(rng.random()), stop))
               for _ in range(2)]
    for client in clients:
        client.start()
    time.sleep(rng.uniform(0.05, 1.2))
    server.kill()
    stop.set()
    for client in clients:
        client.join(20)


def _kill_worker(database_url: str, trend: Trend, rng: random.Random) -> None:
    now = int(time.time() * 1000)
    start = now - now % MINUTE_MS - 60 * MINUTE_MS
    trend.ingest([{"event": "view", "key": f"v{n % 7}", "ts": (start + rng.randrange(59 * MINUTE_MS)) / 1000}
                  for n in range(3000)])
    worker = subprocess.Popen([sys.executable, "-m", "trend", "worker"], env=environment(database_url, **EVERY_SECOND),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.6, 2.0))  # the interpreter starts in ~0.5 s; runs begin on the next second
    worker.send_signal(signal.SIGKILL)
    worker.wait(20)


def _batch_counts(trend: Trend) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in stored_events(trend):
        if event["event_id"]:
            name = event["event_id"].split("-")[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


class TestKillPoints:
    def test_random_sigkills_lose_nothing(self, make_trend: TrendFactory, database_url: str, backend: str) -> None:
        rng = random.Random(f"{backend}-{KILL_POINTS}")
        trend = make_trend(clock=SystemClock())
        trend.db.ensure_schema()
        ledger = Ledger()
        for _ in range(KILL_POINTS):
            _kill_serve(database_url, ledger, rng)
            _kill_worker(database_url, trend, rng)
        counts = _batch_counts(trend)
        assert ledger.acked, "no ingest was acknowledged before the kills"
        assert all(counts.get(name) == BATCH for name in ledger.acked), "an acknowledged ingest was lost"
        assert all(counts.get(name, 0) in (0, BATCH) for name in ledger.unknown), "a batch was half stored"
        assert all(name not in counts for name in ledger.refused)
        assert len(ledger.unknown) >= KILL_POINTS  # the kills really hit ingests in flight
        now = int(time.time() * 1000)
        settle(trend, now)
        assert_levels_equal(trend, stored_events(trend), now)
        print(f"{backend}: {2 * KILL_POINTS} kill points, {len(ledger.acked)} acknowledged batches kept, "
              f"{sum(counts.get(n, 0) == BATCH for n in ledger.unknown)} of {len(ledger.unknown)} unanswered "
              "batches had committed")
