"""``top`` over 24h, side by side with the bare query of a plain rollup design on the same database.

2,000,000 events over 24 hours across 20,000 Zipf-distributed keys (bench/history.py), rolled up,
plus a live tail (the open minute from raw events). Measured in one run, p50 and p99 of:

* ``top`` 24h, warm: a process that has answered this window before in the same minute, so the
  totals of the clean rollup buckets are kept (storage/read/kept.py) and only raw spans are read;
* ``top`` 24h, cold: the clock moves one minute before every request, so the window and its plan
  change and the kept totals never match: every request sums the rollups again;
* the bare ``SELECT key, sum(count) FROM agg_1h ... GROUP BY key ORDER BY 2 DESC LIMIT 10`` over the
  same 24 hours;
* ``top`` by users and ``rising`` 15m (12 baseline windows) warm, against ``top`` by count;
* ``series`` of named keys at 1m and 5m over 24h: keyed reads of the finer levels;
* ``top`` 24h while a late batch is pending: 150,000 events spread over 481 minutes of the window,
  not yet rolled up, so those minutes are read from raw events (each, all of its events).

    python -m bench.top_cached [--backend postgres] [--events 2000000] [--samples 100]
"""

from __future__ import annotations

import statistics

from sqlalchemy import func as sql
from sqlalchemy import select

from bench.common import latencies_ms, machine, parser, percentile, scratch_trend, server_url
from bench.history import fill
from trend.clock import FakeClock
from trend.model import DAY_MS, HOUR_MS, MINUTE_MS
from trend.storage.shared.schema import level_table

NOW = 1_763_016_630_000  # 2025-11-13 06:50:30 UTC: the current minute is open


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--samples", type=int, default=100)
    args = p.parse_args()
    clock = FakeClock(NOW)
    trend = scratch_trend(args.backend, server_url(args), clock)
    trend.db.ensure_schema()
    end = NOW - NOW % MINUTE_MS
    fill(trend, args.events, end - DAY_MS, end)
    trend.rollup()
    trend.ingest([{"event": "search", "key": f"k{1 + n % 40}", "ts": (end + n * 20) / 1000} for n in range(1500)])
    hour_end = end - end % HOUR_MS

    hours = level_table(trend.levels.by_name["1h"])
    # SELECT key, sum(count) AS n FROM agg_1h WHERE event = 'search' AND bucket in the 24h GROUP BY key
    # ORDER BY n DESC LIMIT 10, in each backend's quoting.
    total = sql.sum(hours.c["count"]).label("n")
    bare_query = (select(hours.c.key, total).where(hours.c.event == "search", hours.c.bucket >= hour_end - DAY_MS,
                                                   hours.c.bucket < hour_end)
                  .group_by(hours.c.key).order_by(total.desc()).limit(10))

    def bare() -> None:
        with trend.db.read() as tx:
            tx.execute(bare_query).all()

    def top() -> object:
        return trend.top("search", window="24h")

    def next_minute() -> None:
        clock.advance(MINUTE_MS)

    results: dict[str, list[float]] = {}
    # Interleaved rounds, so that the machine's noise falls on every variant alike.
    for _ in range(5):
        clock.set(NOW)
        for name, func, before in (
                ("bare GROUP BY over agg_1h, 24h", bare, None),
                ("top 24h, warm", top, None),
                ("top 24h by users, warm", lambda: trend.top("search", window="24h", by="users"), None),
                ("rising 15m, warm", lambda: trend.rising("search", window="15m"), None),
                ("top 24h, cold (a new minute each time)", top, next_minute),
                # Keyed reads of the finer levels, which seek their primary key on SQLite.
                ("series of one key, 1m over 24h", lambda: trend.series(
                    "search", key="k7", interval="1m", start_ms=end - DAY_MS + HOUR_MS, end_ms=end), None),
                ("series of two keys, 5m over 24h", lambda: trend.series(
                    "search", key=["k7", "k900"], interval="5m", start_ms=end - DAY_MS + HOUR_MS, end_ms=end), None)):
            results.setdefault(name, []).extend(latencies_ms(func, args.samples // 5, before))
        clock.set(NOW)
    # A late batch over 481 minutes of the window, pending: the runs have not seen it yet.
    late_end = end - 30 * MINUTE_MS
    trend.ingest([{"event": "search", "key": f"k{1 + n % 500}", "ts": (late_end - (n % 481) * MINUTE_MS) / 1000}
                  for n in range(150_000)], strict=False)
    results["top 24h, warm, 481 dirty minutes pending"] = latencies_ms(top, args.samples)
    bare_p50 = statistics.median(results["bare GROUP BY over agg_1h, 24h"])
    top_p50 = statistics.median(results["top 24h, warm"])
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.events:,} events over 24h, 20,000 Zipf keys; "
          f"{args.samples} samples each, in 5 interleaved rounds")
    print("| read | p50 ms | p99 ms | ÷ bare (p50) | ÷ top warm (p50) |")
    print("|---|---|---|---|---|")
    for name, times in results.items():
        p50 = statistics.median(times)
        print(f"| {name} | {p50:.2f} | {percentile(times, 99):.2f} | {p50 / bare_p50:.2f} | {p50 / top_p50:.2f} |")
    trend.close()


if __name__ == "__main__":
    main()
