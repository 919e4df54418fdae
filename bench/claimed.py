"""What a run costs when another process is already catching up the same level.

Fills a backlog of dirty minutes, starts ``trend rollup --level 1m`` in a second process, and while
it works, times in this process, side by side and interleaved:

* ``trend run``: ``LevelRunner.run()`` as the scheduler calls it (skip check, then ``skipped_claimed``
  on SQLite, or a share of the backlog through SKIP LOCKED on PostgreSQL);
* ``blocking claim``: what a run did before it knew about the other process: open a write
  transaction and claim the next bucket, waiting for the write lock.

    python -m bench.claimed [--backend postgres] [--minutes 600] [--per-minute 2000] [--samples 40]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench.common import machine, parser, percentile, scratch_trend, server_url
from bench.history import fill
from trend.clock import SystemClock
from trend.model import LEVELS_BY_NAME, MINUTE_MS
from trend.rollup.runner import LevelRunner
from trend.service import Trend
from trend.storage.shared.markers import claim_next
from trend.storage.write.runs import running

L1M = LEVELS_BY_NAME["1m"]


def _other_running(trend: Trend) -> bool:
    with trend.db.probe() as tx:
        return bool(running(tx, L1M.job))


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--minutes", type=int, default=600)
    p.add_argument("--per-minute", type=int, default=2_000)
    p.add_argument("--samples", type=int, default=40)
    args = p.parse_args()
    clock = SystemClock()
    trend = scratch_trend(args.backend, server_url(args), clock)
    now = clock.now_ms()
    start = now - now % MINUTE_MS - (args.minutes + 2) * MINUTE_MS
    fill(trend, args.minutes * args.per_minute, start, start + args.minutes * MINUTE_MS)
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.minutes} dirty minutes of "
          f"{args.per_minute:,} events, caught up by another process while this one runs")
    other = subprocess.Popen([sys.executable, "-m", "trend", "rollup", "--level", "1m"],
                             env={"TREND_DATABASE_URL": trend.db.url.replace("+psycopg", ""),
                                  "TREND_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"},
                             stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not _other_running(trend) and time.monotonic() < deadline:  # its run record is open: it has begun
        time.sleep(0.01)
    runner = LevelRunner(trend.db, clock, L1M)
    ours: dict[str, list[float]] = {}
    blocking: list[float] = []

    def blocking_claim() -> None:
        with trend.db.write() as tx:
            claim_next(tx, "1m", 2**62, L1M.closed_cutoff(clock.now_ms()))  # past every bucket: claims nothing

    for _ in range(args.samples):
        if other.poll() is not None:
            break
        began = time.perf_counter()
        outcome = runner.run().outcome
        ours.setdefault(outcome, []).append(time.perf_counter() - began)
        began = time.perf_counter()
        blocking_claim()
        blocking.append(time.perf_counter() - began)
        time.sleep(0.05)
    other.kill()
    other.wait()
    print("| path | samples | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    rows = [(f"trend run, {outcome}", samples) for outcome, samples in sorted(ours.items())]
    for name, samples in [*rows, ("blocking claim", blocking)]:
        print(f"| {name} | {len(samples)} | {statistics.median(samples) * 1000:.2f} | "
              f"{percentile(samples, 99) * 1000:.2f} |")
    claimed = ours.get("skipped_claimed", [])
    if claimed:
        print(f"\nratio p50 skipped_claimed run / blocking claim: "
              f"{statistics.median(claimed) / statistics.median(blocking):.3f}")


if __name__ == "__main__":
    main()
