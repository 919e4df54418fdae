"""Work for child processes in the concurrency and crash tests: ``python -m tests.proc_tasks …``."""

from __future__ import annotations

import random
import sys
import time

from trend.service import Trend

KEYS = ["우산", "umbrella", "boots", "coat", "<tag>"]


def batch(rng: random.Random, now: float, prefix: str, n: int, start: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for i in range(n):
        event: dict[str, object] = {
            "event": rng.choice(["search", "view"]), "key": rng.choice(KEYS),
            # 2 to 90 minutes ago: closed buckets, late and out of order.
            "ts": now - rng.uniform(120, 5400), "value": float(rng.randint(0, 4)),
        }
        roll = rng.random()
        if roll < 0.3:
            event["event_id"] = f"{prefix}-{start + i}"
        elif roll < 0.4:
            event["event_id"] = f"shared-{rng.randint(0, 200)}"  # the same ids from every process
        events.append(event)
    return events


def ingest(url: str, seed: int, batches: int, pause: float = 0.0) -> None:
    rng = random.Random(seed)
    with Trend(database_url=url, worker_enabled=False, log_level="WARNING") as trend:
        for number in range(batches):
            trend.ingest(batch(rng, time.time(), f"p{seed}", 50, number * 50))
            time.sleep(pause)


def rollup(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with Trend(database_url=url, worker_enabled=False, log_level="WARNING") as trend:
        while time.monotonic() < deadline:
            trend.rollup()


if __name__ == "__main__":
    task, url, arg1, arg2 = sys.argv[1:5]
    if task == "ingest":
        ingest(url, int(arg1), int(arg2), float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
    else:
        rollup(url, float(arg1))
