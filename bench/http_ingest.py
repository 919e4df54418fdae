"""HTTP ingest and hot reads under Debian's ``hey``, each against a bare endpoint on the same server.

1. ``POST /v1/events`` with batches of 500 varied events (3 event types, 4 segments, 2,000 keys, 10 %
   with an event_id), against ``POST /bare/store``, which parses the same body as FastAPI does and
   stores it by the bare bulk path (``executemany`` on SQLite, COPY on PostgreSQL) into the same table
   and indexes, one transaction per body.
2. ``GET /v1/top?window=1h`` under ``hey -c 32`` while 1,000 events/s are ingested (batches of 100),
   against ``GET /bare/top``, a constant JSON of the same size; p50 and p99 from hey, and how far
   behind the request the answers' ``at`` was (a probe beside hey).
3. The same read with ``If-None-Match`` holding the current ETag, with nothing ingested meanwhile:
   every answer a 304.
4. With ``--history-events``: that many events over 7 days first (20,000 Zipf keys), rolled up; then
   ``GET /v1/series`` 24h at 5m and 7d at 1h, one client at a time, under the same ingest.

One ``uvicorn`` process serves trend with its worker (bench/http_apps.py); variants alternate over
``--rounds`` rounds of ``--seconds`` each; medians and ratios.

    python -m bench.http_ingest [--backend postgres] [--seconds 20] [--rounds 3] [--clients 32]
                                [--history-events 10000000]     (needs hey: apt install hey)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
from tests.servers import answers, environment, free_port

from bench.common import machine, parser, scratch_trend, server_url
from bench.history import fill
from trend.clock import SystemClock
from trend.model import DAY_MS, MINUTE_MS
from trend.service import Trend


def _body(rng: random.Random, now: float, size: int, first_id: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for n in range(size):
        event: dict[str, object] = {
            "event": rng.choice(("search", "view", "purchase")), "key": f"k{int(rng.paretovariate(1.1)) % 2000}",
            "segment": rng.choice(("", "kr", "us", "jp")), "ts": round(now - rng.uniform(0, 300), 3)}
        if rng.random() < 0.1:
            event["event_id"] = f"e-{first_id + n}"
        events.append(event)
    return events


def _hey(url: str, seconds: float, clients: int, *extra: str, status: str = "2") -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one hey run; every answer's status must start with ``status``."""
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(clients), *extra, url],
                         capture_output=True, text=True, check=True).stdout
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    bad = [(code, n) for code, n in codes if not code.startswith(status)]
    assert codes, f"hey got no answers from {url}:\n{out}"
    assert not bad, f"hey saw {bad} from {url}:\n{out}"
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000  # type: ignore[union-attr]
    return rate, p50, p99


class _LagProbe(threading.Thread):
    """Beside a hey run: a request every 50 ms, and how far behind it the answer's ``at`` was."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.lags_ms = url, threading.Event(), [0.0]

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.wait(0.05):
                sent = time.time()
                at = datetime.fromisoformat(http.get(self.url).json()["at"]).timestamp()
                self.lags_ms.append((sent - at) * 1000)


class _Feeder(threading.Thread):
    """1,000 events/s into the server while reads are measured: 100 every 0.1 s."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.sent = url, threading.Event(), 0

    def run(self) -> None:
        rng = random.Random(5)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                began = time.monotonic()
                body = _body(rng, time.time(), 100, 10_000_000 + self.sent)
                assert http.post("/v1/events", json=body).status_code == 202
                self.sent += 100
                self.stop.wait(max(0.0, 0.1 - (time.monotonic() - began)))


# The bare top answers a body as long as a real top answer of 10 keys.
_TOP_BODY = json.dumps({"window": "1h", "at": "2025-11-13T06:51:00+00:00", "items": [
    {"rank": n, "key": f"k{n}", "count": 1000 - n, "users": None, "prev_rank": n, "rank_change": 0,
     "is_new": False} for n in range(1, 11)]})


@contextmanager
def _server(database_url: str, src: str | None = None) -> Iterator[str]:
    """The bench app on ``database_url``, serving this checkout's trend or the one in ``src``."""
    port = free_port()
    env = environment(database_url, BENCH_TOP_BODY=_TOP_BODY,
                      PYTHONPATH=os.pathsep.join([*([src] if src else []), str(Path.cwd()),
                                                  os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.http_apps:app", "--factory",
                               "--port", str(port), "--log-level", "warning"], env=env)
    try:
        if not answers(f"http://127.0.0.1:{port}/healthz", 30):
            sys.exit("the server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _database(args: argparse.Namespace, folder: Path, name: str) -> str:
    """A fresh database for one phase: a SQLite file, or a scratch schema on the server."""
    if args.backend == "sqlite":
        return f"sqlite:///{folder / name}.db"
    trend = scratch_trend(args.backend, server_url(args), SystemClock())
    trend.close()
    return trend.settings.database_url


def _ingest(url: str, args: argparse.Namespace, body_file: Path) -> dict[str, float]:
    post = ("-m", "POST", "-T", "application/json", "-D", str(body_file))
    runs: dict[str, list[float]] = {"trend POST /v1/events": [], "bare POST /bare/store": []}
    for _ in range(args.rounds):
        runs["trend POST /v1/events"].append(_hey(f"{url}/v1/events", args.seconds, args.ingest_clients, *post)[0])
        runs["bare POST /bare/store"].append(_hey(f"{url}/bare/store", args.seconds, args.ingest_clients, *post)[0])
    return {name: statistics.median(rates) * 500 for name, rates in runs.items()}


def _reads(url: str, args: argparse.Namespace) -> tuple[dict[str, list[tuple[float, float, float]]], float]:
    """The hot top list and the constant, under ingest; then conditional GETs, without. The worst lag of ``at``."""
    top = f"{url}/v1/top?event=search&window=1h"
    runs: dict[str, list[tuple[float, float, float]]] = {
        "trend GET /v1/top?window=1h": [], "bare GET /bare/top": [], "trend, If-None-Match (304)": []}
    feeder, worst = _Feeder(url), 0.0
    feeder.start()
    time.sleep(5)
    for _ in range(args.rounds):
        probe = _LagProbe(top)
        probe.start()
        runs["trend GET /v1/top?window=1h"].append(_hey(top, args.seconds, args.clients))
        probe.stop.set()
        probe.join()
        worst = max(worst, *probe.lags_ms)
        runs["bare GET /bare/top"].append(_hey(f"{url}/bare/top", args.seconds, args.clients))
    feeder.stop.set()
    feeder.join()
    for _ in range(args.rounds):
        runs["trend, If-None-Match (304)"].append(_unchanged(top, args))
    return runs, worst


def _unchanged(top: str, args: argparse.Namespace, attempts: int = 4) -> tuple[float, float, float]:
    """One hey run of conditional GETs that all answer 304. The worker's runs still digest the feeder's
    late events for a while, and each changes the data, so the ETag: a run that saw a 200 is tried again."""
    for attempt in range(1, attempts + 1):
        _whole_minute_ahead(args.seconds)
        tag = httpx.get(top).headers["etag"]
        try:
            return _hey(top, args.seconds, args.clients, "-H", f"If-None-Match: {tag}", status="304")
        except AssertionError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _whole_minute_ahead(seconds: float) -> None:
    """An ETag holds for a minute of the window: start a run that fits in what is left of one."""
    left = 60 - time.time() % 60
    if left < seconds + 2:
        time.sleep(left + 0.5)


def _series(url: str, args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    feeder = _Feeder(url)
    feeder.start()
    time.sleep(2)
    now = int(time.time())
    found = {name: _hey(f"{url}/v1/series?event=search&{query}", args.seconds, 1)
             for name, query in (("series 24h at 5m", f"interval=5m&start={now - 86_400}"),
                                 ("series 7d at 1h", f"interval=1h&start={now - 7 * 86_400}"))}
    feeder.stop.set()
    feeder.join()
    return found


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--ingest-clients", type=int, default=8)
    p.add_argument("--history-events", type=int, default=0)
    args = p.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey is not installed: apt install hey")
    folder = Path(tempfile.mkdtemp(prefix="trend-http-"))
    body_file = folder / "body.json"
    body_file.write_text(json.dumps(_body(random.Random(1), time.time(), 500, 0)))
    with _server(_database(args, folder, "ingest")) as url:
        ingest = _ingest(url, args, body_file)
    # A fresh server for the reads, so the ingest phase's burst does not sit in the window.
    with _server(_database(args, folder, "reads")) as url:
        reads, worst_lag = _reads(url, args)
    series: dict[str, tuple[float, float, float]] = {}
    if args.history_events:
        history = _database(args, folder, "history")
        with Trend(database_url=history, worker_enabled=False, log_level="WARNING") as trend:
            end = int(time.time() * 1000) - 2 * MINUTE_MS
            fill(trend, args.history_events, end - 7 * DAY_MS, end)
            trend.rollup()
        with _server(history) as url:
            series = _series(url, args)
    print(f"# {machine()}; one uvicorn process, trend on {args.backend} with its worker; reads hey -c "
          f"{args.clients}, ingest -c {args.ingest_clients}; {args.rounds} rounds of {args.seconds:.0f} s each, "
          "variants alternating; medians")
    print("| ingest, batches of 500 | events/s | ÷ bare |")
    print("|---|---|---|")
    for name, rate in ingest.items():
        print(f"| {name} | {rate:,.0f} | {rate / ingest['bare POST /bare/store']:.2f} |")
    print("\n| read | requests/s | ÷ bare | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    bare_rps = statistics.median(r[0] for r in reads["bare GET /bare/top"])
    for name, runs in reads.items():
        rps = statistics.median(r[0] for r in runs)
        print(f"| {name} | {rps:,.0f} | {rps / bare_rps:.2f} | {statistics.median(r[1] for r in runs):.1f} | "
              f"{statistics.median(r[2] for r in runs):.1f} |")
    print(f"\nthe answers' at, at most {worst_lag:.0f} ms behind the request (a probe every 50 ms beside hey)")
    for name, (rps, p50, p99) in series.items():
        print(f"{name}, with {args.history_events:,} events over 7 days, under ingest: p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms ({rps:,.0f} requests/s, one client)")


if __name__ == "__main__":
    main()
