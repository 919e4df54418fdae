"""What the default rising score costs against the z-score, side by side on one database.

Fills ``--events`` events over ``--days`` days (a long tail of 20,000 keys, bench/history.py), rolls
them up, adds a live tail, then times ``rising`` over 15 minutes (12 baseline windows, by count and by
users) with ``score=poisson`` and ``score=zscore`` in turn: warm (the same Trend, ``--samples`` each)
and cold (a new Trend for each call, ``--cold`` each). Medians and their ratio.

    python -m bench.rising_cost [--backend postgres] [--events 2000000] [--days 2]
"""

from __future__ import annotations

import statistics
import time
from functools import partial

from bench.common import latencies_ms, machine, parser, scratch_trend, server_url
from bench.history import fill
from trend.clock import FakeClock
from trend.model import DAY_MS, MINUTE_MS
from trend.service import Trend

NOW = 1_763_016_630_000  # the current minute is open


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--days", type=int, default=2)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--cold", type=int, default=15)
    args = p.parse_args()
    clock = FakeClock(NOW)
    trend = scratch_trend(args.backend, server_url(args), clock)
    trend.db.ensure_schema()
    end = NOW - NOW % MINUTE_MS - 10 * MINUTE_MS
    fill(trend, args.events, end - args.days * DAY_MS, end)
    trend.rollup()
    trend.ingest([{"event": "search", "key": f"k{1 + n % 40}", "ts": (end + n * 300) / 1000} for n in range(2000)])
    trend.rollup()
    url = trend.db.url
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.events:,} events over {args.days} days")
    print("| rising 15m | poisson p50 ms | zscore p50 ms | poisson ÷ zscore |")
    print("|---|---|---|---|")
    for by in ("count", "users"):
        warm: dict[str, list[float]] = {score: [] for score in ("poisson", "zscore")}
        for _ in range(args.samples):  # alternating, so drift hits both alike
            for score in warm:
                warm[score] += latencies_ms(partial(trend.rising, "search", window="15m", by=by, score=score), 1)
        cold: dict[str, list[float]] = {score: [] for score in ("poisson", "zscore")}
        for _ in range(args.cold):
            for score in cold:
                with Trend(database_url=url, clock=clock, worker_enabled=False, log_level="WARNING") as fresh:
                    fresh.db.ensure_schema()
                    began = time.perf_counter()
                    fresh.rising("search", window="15m", by=by, score=score)
                    cold[score].append((time.perf_counter() - began) * 1000)
        for name, found in (("warm", warm), ("cold", cold)):
            a, b = statistics.median(found["poisson"]), statistics.median(found["zscore"])
            print(f"| by {by}, {name} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    trend.close()


if __name__ == "__main__":
    main()
