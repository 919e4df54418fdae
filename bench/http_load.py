"""HTTP ingest throughput, and what a backlog digest does to the app's latency.

1. ``throughput``: clients POST batches of 500 events to ``trend serve`` for a while; events/s,
   side by side with the same batches given to ``Trend.ingest`` in one process (no HTTP).
2. ``effect``: steady reads (``GET /v1/top`` over the last hour) and small ingests at a fixed rate,
   while the server (``--digest-in process``: a ``trend rollup`` process beside it) digests a
   backlog of ``--backlog`` late events a day old through every level, repeated ``--rounds`` times;
   then the same runs without the backlog (an idle worker), then no runs at all, each for as long,
   at least ``--seconds``; p99 of each, and the busy p99 against both idle ones (``effect``). The
   backlog lies outside the read window on purpose: inside it, reads would be slower because
   exactness makes them read raw events, not because of the worker.

    python -m bench.http_load [--backend postgres] [--backlog 1000000] [--seconds 10] [--digest-in process]
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
from tests.servers import Served

from bench.common import machine, parser, percentile, scratch_trend, server_url
from bench.history import fill
from trend.clock import SystemClock
from trend.model import DAY_MS, HOUR_MS, MINUTE_MS
from trend.service import Trend
from trend.storage.shared.markers import mark


def _batch(rng: random.Random, now: float, size: int) -> list[dict[str, object]]:
    return [{"event": "search", "key": f"k{int(rng.paretovariate(1.1)) % 3000}", "ts": now - rng.uniform(0, 600),
             "segment": rng.choice(["", "kr"])} for _ in range(size)]


def throughput(url: str, trend_ingest: object, seconds: float, clients: int) -> list[str]:
    rng = random.Random(1)
    bodies = [json.dumps(_batch(rng, time.time(), 500)).encode() for _ in range(40)]
    sent = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            n = index
            while time.monotonic() < stop:
                response = http.post("/v1/events", content=bodies[n % len(bodies)],
                                     headers={"content-type": "application/json"})
                assert response.status_code == 202, response.text
                sent[index] += 500
                n += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    http_rate = sum(sent) / (time.perf_counter() - began)
    batches = [json.loads(body) for body in bodies]
    began = time.perf_counter()
    direct = 0
    while time.perf_counter() - began < seconds / 2:
        trend_ingest(batches[direct // 500 % len(batches)])  # type: ignore[operator]  # Trend.ingest
        direct += 500
    direct_rate = direct / (time.perf_counter() - began)
    return [f"| HTTP, {clients} clients, batches of 500 | {http_rate:,.0f} | {http_rate / direct_rate:.2f} |",
            f"| Trend.ingest in one process, batches of 500 | {direct_rate:,.0f} | 1.00 |"]


def _steady_load(url: str, until: threading.Event, reads: list[float], writes: list[float]) -> None:
    rng = random.Random(2)
    with httpx.Client(base_url=url, timeout=30) as http:
        while not until.is_set():
            began = time.perf_counter()
            http.get("/v1/top", params={"event": "search", "window": "1h"}).raise_for_status()
            reads.append(time.perf_counter() - began)
            began = time.perf_counter()
            http.post("/v1/events", json=_batch(rng, time.time(), 20)).raise_for_status()
            writes.append(time.perf_counter() - began)
            time.sleep(0.02)


def digest_by_server(url: str) -> Callable[[], None]:
    """Each level's job through ``POST /v1/jobs/…/run``: on the server's own thread pool."""
    def digest() -> None:
        with httpx.Client(base_url=url, timeout=3600) as http:
            for job in ("agg_1m", "agg_5m", "agg_1h"):
                http.post(f"/v1/jobs/{job}/run").raise_for_status()
    return digest


def digest_by_process(database_url: str) -> Callable[[], None]:
    """``trend rollup`` in a process of its own, as ``trend worker`` beside the app would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREND_")}
    env.update({"TREND_DATABASE_URL": database_url, "TREND_LOG_LEVEL": "WARNING"})

    def digest() -> None:
        subprocess.run([sys.executable, "-m", "trend", "rollup"], env=env, stdout=subprocess.DEVNULL, check=True)
    return digest


def spin_process(seconds: float) -> Callable[[], None]:
    """A control: a process that keeps one core busy as long as a digest, and takes no lock."""
    burn = f"import time\nend = time.perf_counter() + {seconds}\nwhile time.perf_counter() < end: pass"

    def digest() -> None:
        subprocess.run([sys.executable, "-c", burn], check=True)
    return digest


def _loaded(url: str, reads: list[float], writes: list[float]) -> Callable[[], None]:
    """Start the steady load; the returned function stops it."""
    stop = threading.Event()
    loader = threading.Thread(target=_steady_load, args=(url, stop, reads, writes))
    loader.start()

    def stopped() -> None:
        stop.set()
        loader.join()
    return stopped


Samples = tuple[list[float], list[float]]  # read and ingest latencies, seconds


def _phase(url: str, duration: float, runs: list[tuple[float, Callable[[], None]]]) -> Samples:
    """Steady load for ``duration`` seconds (or until the last run ends), each run started at its offset."""
    reads: list[float] = []
    writes: list[float] = []
    stop = _loaded(url, reads, writes)
    began = time.perf_counter()
    for offset, run in runs:
        time.sleep(max(0.0, offset - (time.perf_counter() - began)))
        run()
    time.sleep(max(0.0, duration - (time.perf_counter() - began)))
    stop()
    return reads, writes


def effect(url: str, seconds: float, rounds: int, make_dirty: Callable[[], None],
           digest: Callable[[], None]) -> list[str]:
    """Three phases under the same load, each as long as the busy one, since the read of each new
    minute sums the window's edges again and a shorter phase would cross fewer minutes:

    * busy: ``rounds`` digests of the backlog, back to back;
    * idle worker: the same runs at the same times, without the backlog. They roll up only the
      minutes the load itself made dirty, as a worker with nothing to catch up does, so busy ÷ this
      is the backlog's own price;
    * no runs at all: nothing is rolled up, and no kept totals are voided."""
    _phase(url, 3.0, [])  # discarded: a fresh server's first reads fill its caches
    digests: list[float] = []
    offsets: list[float] = []
    began_busy = time.perf_counter()

    def one_digest() -> None:
        make_dirty()
        began = time.perf_counter()
        offsets.append(began - began_busy)
        digest()
        digests.append(time.perf_counter() - began)

    busy = _phase(url, seconds, [(0.0, one_digest)] * rounds)
    busy_for = max(seconds, time.perf_counter() - began_busy)
    idle_worker = _phase(url, busy_for, [(offset, digest) for offset in offsets])
    quiet = _phase(url, busy_for, [])
    lines = [f"# {rounds} digests of the backlog, {statistics.median(digests):.1f}s each (median); "
             f"{len(busy[0])} busy, {len(idle_worker[0])} idle-worker and {len(quiet[0])} no-run request pairs"]
    for index, name in enumerate(("read GET /v1/top 1h", "ingest POST 20 events")):
        p99s = [percentile(phase[index], 99) * 1000 for phase in (quiet, idle_worker, busy)]
        p50 = percentile(busy[index], 50) * 1000
        lines.append(f"| {name} | {p99s[0]:.1f} | {p99s[1]:.1f} | {p50:.1f} | {p99s[2]:.1f} | "
                     f"{p99s[2] / p99s[1]:.2f} | {p99s[2] / p99s[0]:.2f} |")
    return lines


def mark_dirty(trend: Trend, start: int, end: int) -> None:
    """Make the backlog dirty again at 1m, as a burst of late events would."""
    with trend.db.write() as conn:
        mark(conn, "1m", range(start, end, MINUTE_MS))


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--backlog", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--yield-ratio", default="1.0", help="TREND_WORKER_YIELD_RATIO for the server")
    p.add_argument("--digest-in", choices=["server", "process", "spin"], default="server",
                   help="run the digest on the server's thread pool, or as `trend rollup` in its own process; "
                        "spin: no digest, a process that only burns one core for --spin-seconds (its idle-worker "
                        "phase spins too: compare it with the no-run phase)")
    p.add_argument("--spin-seconds", type=float, default=15)
    args = p.parse_args()
    trend = scratch_trend(args.backend, server_url(args), SystemClock())
    trend.db.ensure_schema()
    now = int(time.time() * 1000)
    recent_end = now - now % MINUTE_MS - 2 * MINUTE_MS
    fill(trend, 200_000, recent_end - 2 * HOUR_MS, recent_end)  # what the reads look at
    late_end = recent_end - DAY_MS
    fill(trend, args.backlog, late_end - 2 * HOUR_MS, late_end)  # the backlog, a day old
    trend.rollup()
    url = trend.db.url.replace("postgresql+psycopg://", "postgresql://")
    print(f"# {machine()}; backend {trend.db.dialect.name}; server: trend serve --no-worker (jobs run through "
          f"POST /v1/jobs/…/run, on the server's thread pool), TREND_WORKER_YIELD_RATIO={args.yield_ratio}")
    server = Served(url, "--no-worker", TREND_WORKER_YIELD_RATIO=args.yield_ratio)
    try:
        print(f"# backlog: {args.backlog:,} events over 2 hours a day ago, made dirty again before each digest")
        print("| load | no runs p99 ms | idle worker p99 ms | digesting p50 ms | digesting p99 ms "
              "| p99 busy ÷ idle worker | p99 busy ÷ no runs |")
        print("|---|---|---|---|---|---|---|")
        backlog = (late_end - 2 * HOUR_MS, late_end)
        digest = {"server": lambda: digest_by_server(server.url), "process": lambda: digest_by_process(url),
                  "spin": lambda: spin_process(args.spin_seconds)}[args.digest_in]()
        print(f"# the digest runs in: {args.digest_in}")
        for line in effect(server.url, args.seconds, args.rounds, lambda: mark_dirty(trend, *backlog), digest):
            print(line)
        print()
        print("| ingest path | events/s | ÷ in-process |")
        print("|---|---|---|")
        for line in throughput(server.url, trend.ingest, args.seconds, args.clients):
            print(line)
    finally:
        server.stop()
    trend.close()


if __name__ == "__main__":
    main()
