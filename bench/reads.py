"""Read latency with a long history, side by side with the naive GROUP BY over raw events.

Fills ``--events`` events over ``--days`` days, times one catch-up through every level, adds a live
tail (open and dirty minutes), then measures p50 and p99 of:

* ``top`` over 24h and ``series`` 1h over 7d (the read targets in docs/benchmarks.md), plus ``top`` 1h
  and ``rising`` 15m;
* the same ``top`` 24h computed by a plain GROUP BY over ``fact_events``, for scale.

    python -m bench.reads [--backend postgres] [--events 10000000] [--days 7] [--samples 200]
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import text

from bench.common import latencies_ms, machine, parser, percentile, scratch_trend, server_url
from bench.history import fill
from trend.clock import FakeClock
from trend.model import DAY_MS, MINUTE_MS
from trend.service import Trend

NOW = 1_763_016_630_000  # 2025-11-13 06:50:30 UTC: the current minute is open
_NAIVE_TOP = """SELECT key, COUNT(*) AS n FROM fact_events WHERE event = 'search' AND ts >= :start AND ts < :end
GROUP BY key ORDER BY n DESC, key LIMIT 10"""


def _latencies(func: Callable[[], object], samples: int) -> tuple[float, float]:
    times = latencies_ms(func, samples)
    return percentile(times, 50), percentile(times, 99)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--samples", type=int, default=200)
    args = p.parse_args()
    clock = FakeClock(NOW)
    trend = scratch_trend(args.backend, server_url(args), clock)
    trend.db.ensure_schema()
    end = NOW - NOW % MINUTE_MS - 10 * MINUTE_MS
    began = time.perf_counter()
    fill(trend, args.events, end - args.days * DAY_MS, end)
    filled = time.perf_counter() - began
    began = time.perf_counter()
    reports = trend.rollup()
    catch_up = time.perf_counter() - began
    # A live tail as a running worker leaves it: ten minutes of new traffic, rolled up but for the
    # open minute, which reads answer from raw events.
    trend.ingest([{"event": "search", "key": f"k{1 + n % 40}", "ts": (end + n * 300) / 1000} for n in range(2000)])
    trend.rollup()
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.events:,} events over {args.days} days "
          f"(filled in {filled:.0f}s); {args.samples} samples each")
    print(f"# catch-up of the whole history through every level: {catch_up:.1f}s "
          f"({', '.join(f'{r.level} {r.buckets} buckets' for r in reports)})")
    print("| read | p50 ms | p99 ms |")
    print("|---|---|---|")
    reads: list[tuple[str, Callable[[], object]]] = [
        ("top, 24h window", lambda: trend.top("search", window="24h")),
        ("top, 24h window, by users", lambda: trend.top("search", window="24h", by="users")),
        ("series 1h over 7d, one key", lambda: trend.series("search", key="k1", interval="1h",
                                                            start_ms=NOW - 7 * DAY_MS, end_ms=NOW)),
        ("top, 1h window", lambda: trend.top("search", window="1h")),
        ("rising, 15m window, 12 baseline windows", lambda: trend.rising("search", window="15m")),
        ("rising, 15m window, by users", lambda: trend.rising("search", window="15m", by="users")),
        ("series 1m over 1h, all keys", lambda: trend.series("search", interval="1m")),
    ]
    medians = {}
    for name, read in reads:
        p50, p99 = _latencies(read, args.samples)
        medians[name] = p50
        print(f"| {name} | {p50:.2f} | {p99:.2f} |")
    p50, p99 = _first_reads(trend, max(5, args.samples // 10))
    print(f"| top, 24h window, a new process's first read | {p50:.2f} | {p99:.2f} |")
    print(f"\ntop 24h by users ÷ by count (p50): "
          f"{medians['top, 24h window, by users'] / medians['top, 24h window']:.2f}")

    def naive() -> None:
        with trend.db.read() as conn:
            conn.execute(text(_NAIVE_TOP), {"start": NOW - NOW % MINUTE_MS + MINUTE_MS - DAY_MS,
                                            "end": NOW - NOW % MINUTE_MS + MINUTE_MS}).all()

    p50, p99 = _latencies(naive, max(5, args.samples // 20))
    print(f"| naive GROUP BY over fact_events, top 24h (for scale) | {p50:.2f} | {p99:.2f} |")
    _sketch_sizes(trend)


def _first_reads(trend: Trend, samples: int) -> tuple[float, float]:
    """``top`` 24h, each on a new Trend of the same database and clock made ready as a server starts
    (untimed): nothing kept in memory, the stored window totals as the last rollup left them."""
    made: list[Trend] = []

    def new_process() -> None:
        made.append(Trend(database_url=trend.settings.database_url, clock=trend.clock, worker_enabled=False,
                          log_level="WARNING"))
        made[-1].db.warm_up()

    times = latencies_ms(lambda: made[-1].top("search", window="24h"), samples, before=new_process)
    for fresh in made:
        fresh.close()
    return percentile(times, 50), percentile(times, 99)


def _sketch_sizes(trend: Trend) -> None:
    """Bytes of users sketch per rollup row, per level: what distinct users cost on disk."""
    size = "length" if trend.db.dialect.name == "sqlite" else "pg_column_size"
    print("\n| level | rows | rows with a sketch | sketch bytes per row (avg) | sketch MB |")
    print("|---|---|---|---|---|")
    with trend.db.read() as tx:
        for level in trend.levels:
            rows, sketched, average, total = tuple(tx.exec_driver_sql(
                f"SELECT count(*), count(users_sketch), avg({size}(users_sketch)), sum({size}(users_sketch)) "
                f"FROM {level.table}").one())
            print(f"| {level.name} | {rows:,} | {sketched:,} | {float(average or 0):.0f} | "
                  f"{float(total or 0) / 1e6:.1f} |")
    trend.close()


if __name__ == "__main__":
    main()
