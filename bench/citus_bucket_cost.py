"""The fixed cost of a bucket in a catch-up: plain PostgreSQL against Citus, side by side in one run.

Many small buckets (minutes of a few dozen events over a long tail of keys, several event types and
segments), so each bucket's fixed cost (claim, statements over every shard, commit, release) is
what the time measures. Citus runs twice: as shipped (up to 32 buckets per transaction) and with
one bucket per transaction, the way it ran before.

    python -m bench.citus_bucket_cost --repeat 3
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from bench.common import machine, parser, scratch_trend
from trend.clock import FakeClock
from trend.model import MINUTE_MS
from trend.storage.dialects import CitusDialect

NOW = 1_763_020_800_000  # 2025-11-13 08:00 UTC


def _events(minutes: int, per_minute: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    start = NOW - (minutes + 10) * MINUTE_MS
    return [{"event": rng.choice(["search", "view", "click"]), "segment": rng.choice(["", "kr", "us", "jp"]),
             "key": f"k{int(rng.paretovariate(1.1)) % 20_000}", "user_id": f"u{rng.randrange(5_000)}",
             "ts": (start + rng.randrange(minutes * MINUTE_MS)) / 1000} for _ in range(minutes * per_minute)]


def _catch_up(backend: str, url: str, events: list[dict[str, Any]]) -> dict[str, float]:
    """ms per bucket of each level's catch-up."""
    trend = scratch_trend(backend, url, FakeClock(NOW))
    trend.db.ensure_schema()
    for offset in range(0, len(events), 10_000):
        trend.ingest(events[offset:offset + 10_000])
    found = {}
    for level in trend.levels.names:
        began = time.perf_counter()
        [report] = trend.rollup(level)
        found[level] = 1000 * (time.perf_counter() - began) / max(1, report.buckets)
    trend.close()
    return found


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--minutes", type=int, default=240)
    p.add_argument("--per-minute", type=int, default=50)
    args = p.parse_args()
    events = _events(args.minutes, args.per_minute)
    shipped = CitusDialect.CAPABILITIES
    runs: dict[str, list[dict[str, float]]] = {"postgres": [], "citus": [], "citus, 1 per transaction": []}
    for _ in range(args.repeat):
        runs["postgres"].append(_catch_up("postgres", args.postgres_url, events))
        runs["citus"].append(_catch_up("citus", args.citus_url, events))
        CitusDialect.CAPABILITIES = shipped.but(buckets_per_transaction=1)
        try:
            runs["citus, 1 per transaction"].append(_catch_up("citus", args.citus_url, events))
        finally:
            CitusDialect.CAPABILITIES = shipped
    medians = {name: {level: statistics.median(run[level] for run in found) for level in found[0]}
               for name, found in runs.items()}
    print(f"# {machine()}; {args.minutes} minutes of {args.per_minute} events (20,000 long-tail keys, 3 event "
          f"types, 4 segments); catch-up ms per bucket, median of {args.repeat}")
    print("| level | PostgreSQL | Citus | Citus ÷ PostgreSQL | Citus, 1 bucket per transaction | ÷ PostgreSQL |")
    print("|---|---|---|---|---|---|")
    for level, plain in medians["postgres"].items():
        citus, single = medians["citus"][level], medians["citus, 1 per transaction"][level]
        print(f"| {level} | {plain:.1f} | {citus:.1f} | {citus / plain:.2f} | {single:.1f} | {single / plain:.2f} |")


if __name__ == "__main__":
    main()
