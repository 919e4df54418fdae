"""Ingest and rollup runs at the same time, in threads and in separate processes (docs/architecture.md).

The invariant: once no marker is left for any closed bucket, every closed bucket of every level
equals the GROUP BY of fact_events over its range.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import PROTOCOL_BACKENDS, TrendFactory
from tests.proc_tasks import batch
from tests.reference import assert_levels_equal, closed_markers, stored_events
from trend.clock import SystemClock
from trend.service import Trend

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", PROTOCOL_BACKENDS, indirect=True)]


def _settle_and_check(trend: Trend) -> None:
    now = int(time.time() * 1000)
    trend.rollup()
    assert closed_markers(trend, now) == []
    assert_levels_equal(trend, stored_events(trend), now)


def _expected_distinct(events: list[dict[str, object]]) -> int:
    ids = [e.get("event_id") for e in events]
    return sum(1 for i in ids if i is None) + len({i for i in ids if i is not None})


class TestThreads:
    def test_ingest_and_runs_in_threads_keep_the_invariant(self, make_trend: TrendFactory) -> None:
        trend = make_trend(clock=SystemClock())
        other = make_trend(clock=SystemClock())  # a second handle, as a second app in one process
        sent: list[dict[str, object]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def ingest(seed: int) -> None:
            rng = random.Random(seed)
            for number in range(30):
                events = batch(rng, time.time(), f"t{seed}", 40, number * 40)
                (trend if seed % 2 else other).ingest(events)
                with lock:
                    sent.extend(events)

        def run_loop(handle: Trend) -> None:
            while not stop.is_set():
                handle.rollup()

        runners = [threading.Thread(target=run_loop, args=(h,)) for h in (trend, other)]
        writers = [threading.Thread(target=ingest, args=(seed,)) for seed in (1, 2, 3)]
        for thread in runners + writers:
            thread.start()
        for thread in writers:
            thread.join(60)
        stop.set()
        for thread in runners:
            thread.join(60)
        assert len(stored_events(trend)) == _expected_distinct(sent)
        _settle_and_check(trend)


class TestProcesses:
    def test_two_ingesting_and_two_rolling_processes_keep_the_invariant(self, make_trend: TrendFactory,
                                                                        database_url: str) -> None:
        trend = make_trend(clock=SystemClock())
        trend.db.ensure_schema()
        command = [sys.executable, "-m", "tests.proc_tasks"]
        rollers = [subprocess.Popen([*command, "rollup", database_url, "6", "0"]) for _ in range(2)]
        writers = [subprocess.Popen([*command, "ingest", database_url, str(seed), "40"]) for seed in (11, 12)]
        try:
            codes = [process.wait(120) for process in writers + rollers]
        finally:
            for process in writers + rollers:  # none outlives the test, whichever failed
                process.kill()
                process.wait()
        assert codes == [0, 0, 0, 0]
        sent: list[dict[str, object]] = []
        for seed in (11, 12):
            rng = random.Random(seed)
            for number in range(40):
                sent.extend(batch(rng, 0.0, f"p{seed}", 50, number * 50))  # same ids and keys; times differ
        assert len(stored_events(trend)) == _expected_distinct(sent)
        _settle_and_check(trend)
