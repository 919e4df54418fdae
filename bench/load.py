"""A bounded load test on loopback: HTTP ingest from several clients, reads, and the worker running.

Reports events/s, p50 and p99 per route, the error rate, and checks at the end that
``count(fact_events)`` equals the events acknowledged and that the rollups equal the truth.

    python -m bench.load [--backend postgres] [--seconds 60] [--writers 4] [--readers 2]
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from tests.servers import EVERY_SECOND, Served

from bench.common import machine, parser, percentile, scratch_trend, server_url
from trend.clock import SystemClock

BATCH = 200


@dataclass
class LoadReport:
    seconds: float = 0.0
    acked_events: int = 0
    requests: int = 0
    errors: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, began: float, ok: bool, events: int = 0) -> None:
        with self.lock:
            self.latencies[route].append(time.perf_counter() - began)
            self.requests += 1
            self.errors += not ok
            self.acked_events += events if ok else 0


def _writer(url: str, seed: int, until: float, report: LoadReport) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=30) as http:
        serial = 0
        while time.monotonic() < until:
            now = time.time()
            events = []
            for _ in range(BATCH):
                serial += 1
                event = {"event": rng.choice(["search", "view"]), "key": f"k{int(rng.paretovariate(1.2)) % 500}",
                         "ts": now - rng.uniform(0, 900), "event_id": f"w{seed}-{serial}"}
                events.append(event)
            began = time.perf_counter()
            try:
                response = http.post("/v1/events", json=events)
                report.record("POST /v1/events", began, response.status_code == 202, BATCH)
            except httpx.TransportError:
                report.record("POST /v1/events", began, False)


def _reader(url: str, seed: int, until: float, report: LoadReport) -> None:
    rng = random.Random(seed)
    reads = [("GET /v1/top", "/v1/top", {"event": "search", "window": "1h"}),
             ("GET /v1/rising", "/v1/rising", {"event": "search", "window": "15m"}),
             ("GET /v1/series", "/v1/series", {"event": "search", "key": "k1", "interval": "1m"}),
             ("GET /v1/jobs", "/v1/jobs", {})]
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < until:
            name, path, params = rng.choice(reads)
            began = time.perf_counter()
            try:
                response = http.get(path, params=params)
                # 422 "unknown event" is right before the first search arrives; anything else is an error.
                report.record(name, began, response.status_code == 200 or response.status_code == 422)
            except httpx.TransportError:
                report.record(name, began, False)


def run_load(url: str, seconds: float, writers: int, readers: int) -> LoadReport:
    report = LoadReport()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_writer, args=(url, n, until, report)) for n in range(writers)]
    threads += [threading.Thread(target=_reader, args=(url, 100 + n, until, report)) for n in range(readers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    report.seconds = time.perf_counter() - began
    return report


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--readers", type=int, default=2)
    args = p.parse_args()
    trend = scratch_trend(args.backend, server_url(args), SystemClock())
    trend.db.ensure_schema()
    url = trend.db.url.replace("postgresql+psycopg://", "postgresql://")
    server = Served(url, **EVERY_SECOND)
    try:
        report = run_load(server.url, args.seconds, args.writers, args.readers)
    finally:
        server.stop()
    from tests.reference import assert_levels_equal, settle, stored_events

    now = int(time.time() * 1000)
    settle(trend, now)
    stored = stored_events(trend)
    assert len(stored) == report.acked_events, f"{len(stored)} stored, {report.acked_events} acknowledged"
    assert_levels_equal(trend, stored, now)
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.seconds:.0f} s, {args.writers} writers (batches of "
          f"{BATCH}), {args.readers} readers; trend serve with every job every second")
    print(f"# {report.acked_events / report.seconds:,.0f} events/s acknowledged; {report.requests} requests, "
          f"{report.errors} errors ({report.errors / max(1, report.requests):.2%}); "
          f"count(fact_events) = {len(stored):,} = events acknowledged; every level equals the truth")
    print("| route | requests | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for route, samples in sorted(report.latencies.items()):
        print(f"| {route} | {len(samples)} | {percentile(samples, 50) * 1000:.1f} | "
              f"{percentile(samples, 99) * 1000:.1f} |")
    trend.close()


if __name__ == "__main__":
    main()
