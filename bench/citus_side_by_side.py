"""Plain PostgreSQL against the three-node Citus cluster, side by side in one run, on one machine.

Each backend gets the same work: bulk ingest through ``Trend.ingest`` (varied types, segments and
keys, 70% with a user_id), the 1m job on a 1M-event minute, a catch-up of a multi-day history
through every level, and ``top`` over 24h on that history by count and by users. On a 2-core
machine the three Citus nodes share the cores, so the ratios show Citus's overhead, not its
speed-up; docs/scaling.md turns the per-node figures into a capacity model.

    python -m bench.citus_side_by_side
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from bench.common import machine, parser, percentile, scratch_trend
from bench.history import fill as fill_history
from bench.ingest import make_events
from bench.rollup_minute import MINUTE
from bench.rollup_minute import fill as fill_minute
from trend.clock import FakeClock
from trend.model import DAY_MS, LEVELS_BY_NAME, MINUTE_MS
from trend.rollup.runner import LevelRunner
from trend.storage.shared.markers import mark

NOW = 1_763_020_800_000  # 2025-11-13 08:00 UTC


def _ingest_rate(backend: str, url: str, events: int, repeat: int) -> float:
    rng = random.Random(3)
    batch = [{**e, "user_id": f"user-{rng.randrange(100_000)}"} if rng.random() < 0.7 else e
             for e in make_events(events, keyed_share=0.1)]
    rates = []
    for _ in range(repeat):
        trend = scratch_trend(backend, url, FakeClock(NOW))
        trend.db.ensure_schema()
        began = time.perf_counter()
        for offset in range(0, events, 10_000):
            trend.ingest(batch[offset:offset + 10_000])
        rates.append(events / (time.perf_counter() - began))
        trend.close()
    return statistics.median(rates)


def _minute_job(backend: str, url: str, events: int, repeat: int) -> float:
    clock = FakeClock(MINUTE + 120_000)
    trend = scratch_trend(backend, url, clock)
    fill_minute(trend, events)
    runner = LevelRunner(trend.db, clock, LEVELS_BY_NAME["1m"])
    times = []
    for _ in range(repeat):
        with trend.db.write() as tx:
            mark(tx, "1m", [MINUTE])
        began = time.perf_counter()
        runner.run()
        times.append(time.perf_counter() - began)
    trend.close()
    return statistics.median(times)


def _history(backend: str, url: str, events: int, days: int, samples: int) -> dict[str, float]:
    trend = scratch_trend(backend, url, FakeClock(NOW))
    trend.db.ensure_schema()
    end = NOW - NOW % MINUTE_MS - 10 * MINUTE_MS
    fill_history(trend, events, end - days * DAY_MS, end)
    began = time.perf_counter()
    trend.rollup()
    found = {"catch-up, s": time.perf_counter() - began}

    def p50_ms(read: Callable[[], object]) -> float:
        read()
        timings = []
        for _ in range(samples):
            began = time.perf_counter()
            read()
            timings.append((time.perf_counter() - began) * 1000)
        return percentile(timings, 50)

    found["top 24h by count, p50 ms"] = p50_ms(lambda: trend.top("search", window="24h"))
    found["top 24h by users, p50 ms"] = p50_ms(lambda: trend.top("search", window="24h", by="users"))
    trend.close()
    return found


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--ingest-events", type=int, default=100_000)
    p.add_argument("--minute-events", type=int, default=1_000_000)
    p.add_argument("--history-events", type=int, default=3_000_000)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--samples", type=int, default=30)
    args = p.parse_args()
    urls = {"postgres": args.postgres_url, "citus": args.citus_url}
    results: dict[str, dict[str, float]] = {}
    for backend, url in urls.items():
        found = {"bulk ingest, events/s": _ingest_rate(backend, url, args.ingest_events, args.repeat),
                 "1m job on a 1M-event minute, s": _minute_job(backend, url, args.minute_events, args.repeat)}
        found.update(_history(backend, url, args.history_events, args.days, args.samples))
        results[backend] = found
    print(f"# {machine()}; PostgreSQL 15 against Citus 13 (coordinator + 2 workers on the same machine); "
          f"ingest {args.ingest_events:,} events, minute {args.minute_events:,}, history {args.history_events:,} "
          f"over {args.days} days; median of {args.repeat}, reads p50 of {args.samples}")
    print("| measure | PostgreSQL | Citus | Citus ÷ PostgreSQL |")
    print("|---|---|---|---|")
    for name, value in results["postgres"].items():
        other = results["citus"][name]
        print(f"| {name} | {value:,.2f} | {other:,.2f} | {other / value:.2f} |")


if __name__ == "__main__":
    main()
