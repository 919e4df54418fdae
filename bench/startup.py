"""What a new process pays before its first answer: importing trend and making a ``Trend``, its first
``top`` 24h, and ``trend top`` on the command line, start-up included. Each in a fresh interpreter,
alternating this checkout with another (``--before``, the ``src`` of a worktree of an earlier commit),
so that both meet the same machine; medians and ratios.

    git worktree add /tmp/before <commit>
    python -m bench.startup --before /tmp/before/src [--events 100000] [--repeat 9]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import fill_a_day_of_searches, machine, parser

HERE = str(Path(__file__).resolve().parents[1] / "src")
FIRST_READ = ("import sys, time; t = time.perf_counter(); from trend import Trend; "
              "trend = Trend(worker_enabled=False); made = time.perf_counter(); trend.top('search', window='24h'); "
              "print(1000 * (made - t), 1000 * (time.perf_counter() - made))")


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--before", required=True, help="the src folder of the code to compare with")
    p.add_argument("--events", type=int, default=100_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/startup.db"
        fill_a_day_of_searches(url, args.events)
        trees = {"before": args.before, "this checkout": HERE}
        times: dict[str, dict[str, list[float]]] = {name: {"import + Trend()": [], "first top 24h": [],
                                                           "trend top (CLI, wall)": []} for name in trees}
        for _ in range(args.repeat):
            for name, src in trees.items():
                env = {**os.environ, "PYTHONPATH": src, "TREND_DATABASE_URL": url, "TREND_LOG_LEVEL": "WARNING"}
                made, first = subprocess.run([sys.executable, "-c", FIRST_READ], capture_output=True, text=True,
                                             env=env, check=True).stdout.split()
                times[name]["import + Trend()"].append(float(made))
                times[name]["first top 24h"].append(float(first))
                began = time.perf_counter()
                subprocess.run([sys.executable, "-m", "trend", "top", "--event", "search", "--window", "24h"],
                               capture_output=True, env=env, check=True)
                times[name]["trend top (CLI, wall)"].append(1000 * (time.perf_counter() - began))
    print(f"{machine()}; {args.events:,} events, {args.repeat} runs each, alternating; medians in ms\n")
    print("| | before | this checkout | ratio |\n|---|---|---|---|")
    for what in times["before"]:
        old, new = (statistics.median(times[name][what]) for name in trees)
        print(f"| {what} | {old:.0f} | {new:.0f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
