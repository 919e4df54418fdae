"""What a new process pays before its first answer: importing trend and making a ``Trend``, its first
``top`` 24h (right away, as a CLI call does, and after a server's start-up, ``Trend.warm_up``), reads
the warm-up did not make, and
``trend top`` on the command line, start-up included. Each in a fresh interpreter, alternating this
checkout with another (``--before``, the ``src`` of a worktree of an earlier commit), so that both
meet the same machine and the same database; medians and ratios.

The database is filled and rolled up by this checkout, and rolled up again before each round, as the
worker's hourly job would: so this checkout's stored window totals are current (query/prepared.py),
and code from before them reads the same rows without them.

    git worktree add /tmp/before <commit>
    python -m bench.startup --before /tmp/before/src [--backend postgres] [--events 2000000] [--repeat 9]
                            [--days 7]   (bench.history's 3 event types and long tail over 7 days)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import fill_a_day_of_searches, machine, parser, scratch_trend, server_url
from bench.history import fill
from trend import Trend
from trend.clock import SystemClock

HERE = str(Path(__file__).resolve().parents[1] / "src")
# A process that reads at once (a CLI call), and one that starts as a server does first (a new replica).
RIGHT_AWAY = """
import time
began = time.perf_counter()
from trend import Trend
trend = Trend(worker_enabled=False)
ready = time.perf_counter()
trend.top('search', window='24h')
print(1000 * (ready - began), 1000 * (time.perf_counter() - ready))
"""
AS_A_SERVER = """
import time
from trend import Trend
trend = Trend(worker_enabled=False)
began = time.perf_counter()
# What a server's lifespan runs before it serves: Trend.warm_up where it exists, else the database's.
(getattr(trend, 'warm_up', None) or getattr(trend.db, 'warm_up', trend.db.ensure_schema))()
ready = time.perf_counter()
trend.top('search', window='24h')
first = time.perf_counter()
trend.top('search', window='24h')
second = time.perf_counter()
trend.top('search', window='24h', by='users')  # a read the warm-up did not make
other = time.perf_counter()
trend.top('search', window='15m')
print(1000 * (ready - began), 1000 * (first - ready), 1000 * (second - first), 1000 * (other - second),
      1000 * (time.perf_counter() - other))
"""
WHAT = ("import + Trend()", "first top 24h, right away", "a server's start-up (warm_up)",
        "first top 24h, after a server's start-up", "second top 24h", "then a first top 24h by users",
        "then a first top 15m", "trend top (CLI, wall)")


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--before", required=True, help="the src folder of the code to compare with")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--days", type=int, default=1, help="more than 1: bench.history's events over that many days")
    args = p.parse_args()
    with scratch_trend(args.backend, server_url(args), SystemClock()) as scratch:
        url = scratch.settings.database_url
        if args.days > 1:
            now = int(time.time() * 1000)
            fill(scratch, args.events, now - args.days * 86_400_000, now)
    if args.days == 1:
        fill_a_day_of_searches(url, args.events)
    trees = {"before": args.before, "this checkout": HERE}
    times: dict[str, dict[str, list[float]]] = {name: {what: [] for what in WHAT} for name in trees}
    for _ in range(args.repeat):
        with Trend(database_url=url, worker_enabled=False, log_level="WARNING") as trend:
            trend.rollup()  # as the hourly job does: stores the window totals of the hour, if not current
        for name, src in trees.items():
            env = {**os.environ, "PYTHONPATH": src, "TREND_DATABASE_URL": url, "TREND_LOG_LEVEL": "WARNING"}
            found = [ms for script in (RIGHT_AWAY, AS_A_SERVER) for ms in subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout.split()]
            for what, ms in zip(WHAT, found, strict=False):
                times[name][what].append(float(ms))
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "trend", "top", "--event", "search", "--window", "24h"],
                           capture_output=True, env=env, check=True)
            times[name][WHAT[-1]].append(1000 * (time.perf_counter() - began))
    print(f"{machine()}; {args.backend}, {args.events:,} events over {args.days} days, {args.repeat} runs each, "
          "alternating; medians in ms\n")
    print("| | before | this checkout | ratio |\n|---|---|---|---|")
    for what in WHAT:
        old, new = (statistics.median(times[name][what]) for name in trees)
        print(f"| {what} | {old:.1f} | {new:.1f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
