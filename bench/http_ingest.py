"""HTTP ingest and a hot top list under Debian's ``hey``, each against a bare endpoint on the same server.

1. ``POST /v1/events`` with batches of 500 varied events (3 event types, 4 segments, 2,000 keys, 10 %
   with an event_id), against ``POST /bare/events``, which parses the same body and discards it.
2. ``GET /v1/top?window=1h`` while 1,000 events/s are ingested, against ``GET /bare/top``, a constant
   JSON of the same size. p50 and p99 from hey's latency distribution.

Both run on one ``uvicorn`` process serving trend on SQLite with its worker (bench/http_apps.py);
variants alternate over ``--rounds`` rounds of ``--seconds`` each; medians and ratios.

    python -m bench.http_ingest [--seconds 8] [--rounds 3] [--clients 8]     (needs hey: apt install hey)
"""

from __future__ import annotations

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
from pathlib import Path

import httpx
from tests.servers import answers, environment, free_port

from bench.common import machine, parser


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


def _hey(url: str, seconds: float, clients: int, *extra: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one hey run."""
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(clients), *extra, url],
                         capture_output=True, text=True, check=True).stdout
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    bad = [(code, n) for code, n in codes if code[0] != "2"]
    assert codes, f"hey got no answers from {url}:\n{out}"
    assert not bad, f"hey saw {bad} from {url}:\n{out}"
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000  # type: ignore[union-attr]
    return rate, p50, p99


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
def _server(database: Path) -> Iterator[str]:
    port = free_port()
    env = environment(f"sqlite:///{database}", BENCH_TOP_BODY=_TOP_BODY,
                      PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.http_apps:app", "--factory",
                               "--port", str(port), "--log-level", "warning"], env=env)
    try:
        if not answers(f"http://127.0.0.1:{port}/healthz", 30):
            sys.exit("the server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey is not installed: apt install hey")
    folder = Path(tempfile.mkdtemp(prefix="trend-http-"))
    body_file = folder / "body.json"
    body_file.write_text(json.dumps(_body(random.Random(1), time.time(), 500, 0)))
    post = ("-m", "POST", "-T", "application/json", "-D", str(body_file))
    ingest: dict[str, list[float]] = {"trend POST /v1/events": [], "bare POST /bare/events": []}
    with _server(folder / "ingest.db") as url:
        for _ in range(args.rounds):
            ingest["trend POST /v1/events"].append(_hey(f"{url}/v1/events", args.seconds, args.clients, *post)[0])
            ingest["bare POST /bare/events"].append(_hey(f"{url}/bare/events", args.seconds, args.clients, *post)[0])
    # A fresh server for the reads, so the ingest phase's burst does not sit in the window.
    reads: dict[str, list[tuple[float, float, float]]] = {"trend GET /v1/top?window=1h": [], "bare GET /bare/top": []}
    with _server(folder / "reads.db") as url:
        feeder = _Feeder(url)
        feeder.start()
        time.sleep(5)
        for _ in range(args.rounds):
            reads["trend GET /v1/top?window=1h"].append(
                _hey(f"{url}/v1/top?event=search&window=1h", args.seconds, args.clients))
            reads["bare GET /bare/top"].append(_hey(f"{url}/bare/top", args.seconds, args.clients))
        feeder.stop.set()
        feeder.join()
    print(f"# {machine()}; one uvicorn process, trend on SQLite with its worker; hey -c {args.clients}, "
          f"{args.rounds} rounds of {args.seconds:.0f} s each, variants alternating; medians")
    print("| ingest, batches of 500 | events/s | ÷ bare |")
    print("|---|---|---|")
    bare = statistics.median(ingest["bare POST /bare/events"]) * 500
    for name, rates in ingest.items():
        rate = statistics.median(rates) * 500
        print(f"| {name} | {rate:,.0f} | {rate / bare:.2f} |")
    print("\n| read, while 1,000 events/s are ingested | requests/s | ÷ bare | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    bare_rps = statistics.median(r[0] for r in reads["bare GET /bare/top"])
    for name, runs in reads.items():
        rps = statistics.median(r[0] for r in runs)
        print(f"| {name} | {rps:,.0f} | {rps / bare_rps:.2f} | {statistics.median(r[1] for r in runs):.1f} | "
              f"{statistics.median(r[2] for r in runs):.1f} |")


if __name__ == "__main__":
    main()
