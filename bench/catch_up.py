"""Catch-up of a backlog through every level, by 1, 2 or 3 ``trend rollup`` processes at once.

Fills ``--events`` events over the 24 hours before now with every minute dirty, then starts N
processes of ``trend rollup --level all`` together and times until every closed bucket is clean.
On PostgreSQL the processes share the backlog through ``FOR UPDATE SKIP LOCKED``; on SQLite writers
are serialized, so more processes only add contention.

    python -m bench.catch_up [--backend postgres] [--events 10000000] [--processes 1 2 3] [--whole-buckets]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from bench.common import machine, parser, scratch_trend, server_url
from bench.history import fill
from trend.clock import SystemClock
from trend.model import DAY_MS, LEVELS_BY_NAME, MINUTE_MS
from trend.service import Trend
from trend.storage.shared.markers import backlog


def closed_dirty(trend: Trend, now: int) -> int:
    with trend.db.read() as conn:
        return sum(backlog(conn, name, level.closed_cutoff(now)).dirty for name, level in LEVELS_BY_NAME.items())


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--whole-buckets", action="store_true", help="run `trend rollup --whole-buckets`")
    args = p.parse_args()
    rollup = [sys.executable, "-m", "trend", "rollup", *(["--whole-buckets"] if args.whole_buckets else [])]
    print(f"# {machine()}; backend {args.backend}; {args.events:,} events over 24h, every minute dirty; "
          f"{' '.join(rollup[2:])}")
    print("| processes | catch-up s | buckets per s | peak RSS of a rollup process MB |")
    print("|---|---|---|---|")
    for count in args.processes:
        trend = scratch_trend(args.backend, server_url(args), SystemClock())
        trend.db.ensure_schema()
        now = int(time.time() * 1000)
        end = now - now % MINUTE_MS - 2 * MINUTE_MS
        fill(trend, args.events, end - DAY_MS, end)
        buckets = closed_dirty(trend, now)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TREND_")}
        env.update({"TREND_DATABASE_URL": trend.db.url.replace("postgresql+psycopg://", "postgresql://"),
                    "TREND_LOG_LEVEL": "WARNING"})
        began = time.perf_counter()
        workers = [subprocess.Popen([*rollup, "--level", "all"], env=env, stdout=subprocess.DEVNULL)
                   for _ in range(count)]
        for worker in workers:
            worker.wait()
        # A process that finished its levels early leaves parents that others marked: run once more.
        subprocess.run(rollup, env=env, stdout=subprocess.DEVNULL, check=True)
        seconds = time.perf_counter() - began
        left = closed_dirty(trend, now)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        assert left == 0, f"{left} closed buckets still dirty"
        print(f"| {count} | {seconds:.1f} | {buckets / seconds:.0f} | {peak:.0f} |")
        trend.close()


if __name__ == "__main__":
    main()
