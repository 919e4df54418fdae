"""What ``trend.client`` costs the app that sends events: the time of one ``track()`` call, side by side
with the bare floor (a dict put on a ``queue.Queue``) and with what an app without the client would do
(one ``POST /v1/events`` per event, waiting for the answer). Against a real ``trend serve`` on SQLite,
with varied events (3 types, 4 segments, 20,000 long-tail keys, a user on most).

Also: the same ``track()`` calls while the server is stopped (the queue fills and drops), so the
app's cost is shown when trend is away.

    python -m bench.client_track [--events 20000] [--rounds 5]
"""

from __future__ import annotations

import queue
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.servers import Served

from bench.common import machine, parser
from trend.client import TrendClient


def _events(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"event": rng.choice(("search", "view", "purchase")), "key": f"k{int(rng.paretovariate(1.1)) % 20_000}",
             "segment": rng.choice(("", "kr", "us", "jp")), "user_id": f"u{rng.randrange(50_000)}"}
            for _ in range(count)]


def _per_call_us(calls: list[dict[str, Any]], call: Any) -> float:
    began = time.perf_counter()
    for event in calls:
        call(event)
    return (time.perf_counter() - began) / len(calls) * 1e6


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    events, rounds = 20_000, args.repeat
    folder = Path(tempfile.mkdtemp(prefix="trend-bench-client-"))
    server = Served(f"sqlite:///{folder / 'bench.db'}", "--no-worker")
    results: dict[str, list[float]] = {"queue.put (floor)": [], "track()": [], "POST per event": [],
                                       "track(), server down": []}
    try:
        for round_ in range(rounds):
            batch = _events(events, round_)
            floor: queue.Queue[dict[str, Any]] = queue.Queue(10_000_000)
            results["queue.put (floor)"].append(_per_call_us(batch, floor.put_nowait))
            client = TrendClient(server.url, max_queue=100_000)
            results["track()"].append(_per_call_us(
                batch, lambda e, c=client: c.track(e["event"], e["key"], segment=e["segment"], user_id=e["user_id"])))
            assert client.flush(120)
            client.close()
            assert client.stats.delivered == events, client.stats
            with httpx.Client(timeout=10) as http:
                one_by_one = batch[: events // 20]  # 1,000 requests: enough for a median
                results["POST per event"].append(_per_call_us(
                    one_by_one, lambda e, h=http: h.post(f"{server.url}/v1/events", json=e).raise_for_status()))
            away = TrendClient("http://127.0.0.1:9", max_queue=10_000, max_retries=1000, timeout=1)
            results["track(), server down"].append(_per_call_us(
                batch, lambda e, c=away: c.track(e["event"], e["key"], segment=e["segment"], user_id=e["user_id"])))
            dropped = away.stats.dropped
            away.close(timeout=0.1)
            print(f"round {round_ + 1}: " + ", ".join(f"{name} {values[-1]:.2f} µs" for name, values in results.items())
                  + f"; {dropped} of {events} dropped while the server was down")
    finally:
        server.stop()
    floor_us = statistics.median(results["queue.put (floor)"])
    print(f"\n{machine()}; {events} events per round, {rounds} rounds, medians:")
    print("| per call | µs | × floor |")
    print("|---|---|---|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / floor_us:.1f} |")


if __name__ == "__main__":
    main()
