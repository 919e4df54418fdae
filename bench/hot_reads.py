"""A hot ``top`` under ``hey -c 32`` while 1,000 events/s are ingested, against a constant page of the
same size on the same server, for this checkout and another (``--before``, the ``src`` of a worktree
of an earlier commit), alternating on one database: requests/s as a ratio of the constant page's,
and p99 as a multiple of its p99, each the median over ``--rounds``.

    git worktree add /tmp/before <commit>
    python -m bench.hot_reads --before /tmp/before/src [--backend postgres] [--seconds 12] [--rounds 3]
                                                       (needs hey: apt install hey)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine, parser
from bench.http_ingest import _database, _Feeder, _hey, _server

TOP = "/v1/top?event=search&window=1h"


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--before", required=True, help="the src folder of the code to compare with")
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=32)
    args = p.parse_args()
    url = _database(args, Path(tempfile.mkdtemp(prefix="trend-hot-")), "hot")
    trees = {"before": args.before, "this checkout": None}
    found: dict[str, dict[str, list[float]]] = {name: {"rate": [], "p50": [], "p99": [], "bare p99": []}
                                                for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():
            with _server(url, src) as base:
                feeder = _Feeder(base)
                feeder.start()
                time.sleep(3)
                rate, p50, p99 = _hey(base + TOP, args.seconds, args.clients)
                bare_rate, _, bare_p99 = _hey(f"{base}/bare/top", args.seconds, args.clients)
                feeder.stop.set()
                feeder.join()
            for what, value in (("rate", rate / bare_rate), ("p50", p50), ("p99", p99 / bare_p99),
                                ("bare p99", bare_p99)):
                found[name][what].append(value)
    print(f"{machine()}; {args.backend}; hey -c {args.clients} for {args.seconds:.0f} s, {args.rounds} rounds, "
          "alternating; medians\n")
    print("| | req/s ÷ constant page | p50 ms | p99 ÷ constant page's p99 | constant page's p99 ms |")
    print("|---|---|---|---|---|")
    for name in trees:
        rate, p50, p99, bare = (statistics.median(found[name][what]) for what in ("rate", "p50", "p99", "bare p99"))
        print(f"| {name} | {rate:.2f} | {p50:.1f} | {p99:.1f} | {bare:.1f} |")


if __name__ == "__main__":
    main()
