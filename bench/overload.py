"""One client's flood of expensive reads against a real ``trend serve``, and a second client beside it.

Data: ``--keys`` keys of the event ``bulk`` from ``--people`` people over six days (and a few keys of
``search``, for cheap reads), rolled up. The flood: ``--threads`` threads of one client (127.0.0.1)
asking ``GET /v1/top?event=bulk&by=users&window=7d&limit=<random>`` (a random limit: no shared answer)
for ``--seconds``. The second client (127.0.0.2) every 0.3 s: one event ``POST /v1/events``, ``GET
/readyz``, and a cheap ``GET /v1/top?event=search``. Reported: the second client's p50/p99/max and
failures, the flood's answers by status (and whether each refusal had ``Retry-After``), its timeouts
and dropped connections, and the server's RSS before, at its peak during, and 5 s after the flood.
Before the flood, what must not change without one: a hot ``top`` under ``hey -c 32`` and HTTP
ingest in batches of 500.

``--before-src DIR`` runs the same against the code in DIR (a checkout's ``src``, e.g. of the
commit before) side by side, on data made the same way by that code.

    python -m bench.overload [--backend postgres] [--before-src /tmp/old/src] [--threads 48] [--seconds 45]
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.servers import Process, environment, free_port, wait_until_up

from bench.common import machine, parser, percentile
from bench.http_ingest import _hey

SECOND_CLIENT = "127.0.0.2"
ROOT = Path(__file__).resolve().parents[1]


def seed(url: str, keys: int, people: int, events: int, days: float = 5.9) -> None:
    """The flood's data over the last ``days``, made by whichever trend is on the path (this one, or
    --before-src's)."""
    from trend.service import Trend

    rng = random.Random(7)
    now = time.time()
    with Trend(database_url=url, worker_enabled=False, log_level="WARNING", worker_yield_ratio=0.0) as trend:
        for start in range(0, events, 20_000):
            trend.ingest([{"event": "bulk", "key": f"k{int(rng.paretovariate(0.8)) % keys}",
                           "user_id": f"u{rng.randrange(people)}", "ts": now - rng.uniform(120, days * 86_400)}
                          for _ in range(min(20_000, events - start))])
        trend.ingest([{"event": "search", "key": f"s{n % 20}", "ts": now - 300} for n in range(400)])
        trend.rollup()


@dataclass
class Seen:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    flood: Counter[str] = field(default_factory=Counter)
    rss_mb: list[float] = field(default_factory=list)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _flood(url: str, stop: threading.Event, seen: Seen, rng: random.Random) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            try:
                answer = http.get("/v1/top", params={"event": "bulk", "by": "users", "window": "7d",
                                                     "limit": rng.randrange(1, 101)})
            except httpx.TimeoutException:
                seen.flood["timeout"] += 1
                continue
            except httpx.TransportError:
                seen.flood["dropped"] += 1
                continue
            refused = answer.status_code in (429, 503)
            unsaid = refused and "retry-after" not in answer.headers
            seen.flood[f"{answer.status_code}{' (no Retry-After)' if unsaid else ''}"] += 1
            if refused:
                time.sleep(min(0.05, float(answer.headers.get("retry-after", "0"))))  # a client that backs off a little


def _second(url: str, stop: threading.Event, seen: Seen) -> None:
    transport = httpx.HTTPTransport(local_address=SECOND_CLIENT)
    calls: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "POST /v1/events": lambda http: http.post("/v1/events", json={"event": "search", "key": "probe"}),
        "GET /readyz": lambda http: http.get("/readyz"),
        "GET /v1/top (cheap)": lambda http: http.get("/v1/top", params={"event": "search", "window": "1h"})}
    with httpx.Client(base_url=url, timeout=30, transport=transport) as http:
        while not stop.is_set():
            for name, call in calls.items():
                began = time.perf_counter()
                try:
                    ok = call(http).status_code < 300
                except httpx.TransportError:
                    ok = False
                seen.latencies.setdefault(name, []).append(time.perf_counter() - began)
                if not ok:
                    seen.failures[name] += 1
            stop.wait(0.3)


def run(url: str, pid: int, threads: int, seconds: float) -> Seen:
    seen = Seen()
    seen.rss_mb.append(_rss_mb(pid))
    stop = threading.Event()
    flooders = [threading.Thread(target=_flood, args=(url, stop, seen, random.Random(n))) for n in range(threads)]
    second = threading.Thread(target=_second, args=(url, stop, seen))
    for thread in [*flooders, second]:
        thread.start()
    peak = seen.rss_mb[0]
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        time.sleep(0.5)
        peak = max(peak, _rss_mb(pid))
    stop.set()
    for thread in [*flooders, second]:
        thread.join(60)
    seen.rss_mb.append(peak)
    time.sleep(5)
    seen.rss_mb.append(_rss_mb(pid))
    return seen


def without_flood(address: str, seconds: float) -> dict[str, float]:
    """What admission must not change when nobody floods: a hot top list under ``hey -c 32`` (one
    client), and events a second from four threads posting batches of 500."""
    rate, p50, p99 = _hey(f"{address}/v1/top?event=search&window=1h", seconds, 32)
    stored = 0
    stop = threading.Event()
    lock = threading.Lock()

    def post() -> None:
        nonlocal stored
        with httpx.Client(base_url=address, timeout=30) as http:
            while not stop.is_set():
                now = time.time()
                answer = http.post("/v1/events", json=[{"event": "search", "key": f"q{n % 50}", "ts": now - 60}
                                                       for n in range(500)])
                if answer.status_code == 202:
                    with lock:
                        stored += 500

    posters = [threading.Thread(target=post) for _ in range(4)]
    began = time.monotonic()
    for thread in posters:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in posters:
        thread.join(60)
    return {"hot_top_rps": round(rate), "hot_top_p50_ms": p50, "hot_top_p99_ms": p99,
            "ingest_events_per_s": round(stored / (time.monotonic() - began))}


def _serve(url: str, src: str | None, env: dict[str, str]) -> tuple[Process, str]:
    port = free_port()
    extra = {"PYTHONPATH": f"{src}:{ROOT}"} if src else {}
    process = Process([sys.executable, "-m", "trend", "serve", "--port", str(port), "--no-worker"],
                      {**environment(url, **env), **extra}, cwd=str(ROOT))
    address = f"http://127.0.0.1:{port}"
    wait_until_up(process, f"{address}/healthz", "trend serve")
    return process, address


def _database(backend: str, postgres_url: str, name: str) -> str:
    if backend == "sqlite":
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"trend-overload-{os.getpid()}"
        folder.mkdir(exist_ok=True)
        return f"sqlite:///{folder / name}.db"
    import psycopg

    schema = f"overload_{name}_{os.getpid()}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}options=-csearch_path%3D{schema},public"


def _report(name: str, seen: Seen) -> dict[str, Any]:
    second = {call: {"p50_ms": round(percentile(times, 50) * 1000, 1),
                     "p99_ms": round(percentile(times, 99) * 1000, 1), "max_ms": round(max(times) * 1000, 1),
                     "n": len(times), "failed": seen.failures[call]}
              for call, times in seen.latencies.items()}
    return {"code": name, "second_client": second, "flood": dict(seen.flood),
            "rss_mb": {"before": round(seen.rss_mb[0]), "peak": round(seen.rss_mb[1]), "after": round(seen.rss_mb[2])}}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--before-src", default=None, help="a checkout's src to run side by side")
    p.add_argument("--keys", type=int, default=30_000)
    p.add_argument("--people", type=int, default=10_000)
    p.add_argument("--events", type=int, default=400_000)
    p.add_argument("--threads", type=int, default=48)
    p.add_argument("--seconds", type=float, default=45)
    p.add_argument("--quiet-seconds", type=float, default=10, help="each measure without a flood")
    p.add_argument("--seed-only", default=None, help="(internal) seed the database at this URL and stop")
    args = p.parse_args()
    if args.seed_only:
        seed(args.seed_only, args.keys, args.people, args.events)
        return
    results = []
    for name, src in [("this", None), *([("before", args.before_src)] if args.before_src else [])]:
        url = _database(args.backend, args.postgres_url, name)
        extra = {"PYTHONPATH": f"{src}:{ROOT}"} if src else {}
        subprocess.run([sys.executable, "-m", "bench.overload", "--seed-only", url, "--keys", str(args.keys),
                        "--people", str(args.people), "--events", str(args.events)],
                       check=True, cwd=ROOT, env={**os.environ, **extra})
        process, address = _serve(url, src, {})
        try:
            quiet = without_flood(address, args.quiet_seconds)
            results.append({**_report(name, run(address, process.process.pid, args.threads, args.seconds)),
                            "without_flood": quiet})
        finally:
            process.stop()
    print(json.dumps({"machine": machine(), "backend": args.backend, "threads": args.threads,
                      "seconds": args.seconds, "results": results}, indent=1))


if __name__ == "__main__":
    main()
