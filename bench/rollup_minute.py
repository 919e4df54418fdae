"""1M-event minutes rolled up several ways, side by side, and the skip path.

Two minutes of ``--events`` events each, in one database: one whose events carry **no user**, and
one where 70 % of them carry one of 50,000 user ids. On each:

* ``trend 1m job``: the real runner (claim marker, recompute, mark parent, release, run record);
* ``bare GROUP BY``: one ``INSERT … SELECT … GROUP BY`` on the same table and index;
* ``bare GROUP BY + users``: the same with the users sketch, as the job computes it;
* ``seed-style``: the original's ``COUNT(*)`` pre-check, then a GROUP BY over a ``ts`` range, on a
  copy of the events indexed by ``ts`` only (the seed had no users: the same work on either minute).

    python -m bench.rollup_minute [--backend postgres] [--events 1000000] [--repeat 5]
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import text

from bench.common import machine, median_seconds, parser, percentile, scratch_trend, server_url
from trend.clock import FakeClock
from trend.model import LEVELS_BY_NAME
from trend.rollup.runner import LevelRunner
from trend.service import Trend
from trend.storage.shared.markers import any_dirty, mark

MINUTE = 1_763_016_600_000  # 2025-11-13 06:50:00 UTC: its events carry no user
USERS_MINUTE = MINUTE + 60_000  # 70 % of its events carry a user

_ROWS = """
    SELECT {minute} + (i * 7) % 60000,
           CASE i % 3 WHEN 0 THEN 'search' WHEN 1 THEN 'view' ELSE 'purchase' END,
           CASE i % 4 WHEN 0 THEN '' ELSE 'seg' || (i % 4) END,
           'key-' || ((i * i) % 5000), (i % 10) * 1.0, {minute}, {minute},
           CASE WHEN {with_users} AND i % 10 < 7 THEN 'user-' || ((i * 7919) % 50000) END
    FROM {numbers}
"""
_COLUMNS = "INSERT INTO fact_events (ts, event, segment, key, value, received_at, minute, user_id) "
_FILL = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) " + _COLUMNS + _ROWS,
    "postgresql": _COLUMNS + _ROWS,
}
_NUMBERS = {"sqlite": "n", "postgresql": "generate_series(0::bigint, {last}) AS i"}
_BARE = """INSERT INTO agg_1m (bucket, event, segment, key, count, value_sum, value_min, value_max, user_events)
    SELECT minute, event, segment, key, COUNT(*), SUM(value), MIN(value), MAX(value), COUNT(user_id)
    FROM fact_events WHERE minute = {minute} GROUP BY minute, event, segment, key"""
_SEED_TABLE = """CREATE TABLE seed_events AS SELECT ts, event, segment, key, value FROM fact_events"""
_SEED_AGG = """CREATE TABLE seed_agg (bucket BIGINT, event TEXT, segment TEXT, key TEXT, count BIGINT,
    value_sum DOUBLE PRECISION, value_min DOUBLE PRECISION, value_max DOUBLE PRECISION)"""
_SEED_COUNT = "SELECT COUNT(*) FROM seed_events WHERE ts >= {minute} AND ts < {minute} + 60000"
_SEED_GROUP = """INSERT INTO seed_agg SELECT {minute}, event, segment, key, COUNT(*), SUM(value), MIN(value),
    MAX(value) FROM seed_events WHERE ts >= {minute} AND ts < {minute} + 60000 GROUP BY event, segment, key"""


def fill(trend: Trend, events: int) -> None:
    dialect = "sqlite" if trend.db.dialect.name == "sqlite" else "postgresql"  # Citus speaks PostgreSQL
    numbers = _NUMBERS[dialect].format(last=events - 1)
    with trend.db.write() as conn:
        for minute, with_users in ((MINUTE, "false"), (USERS_MINUTE, "true")):
            conn.execute(text(_FILL[dialect].format(last=events - 1, minute=minute, numbers=numbers,
                                                    with_users=with_users)))
        conn.execute(text(_SEED_TABLE))
        conn.execute(text("CREATE INDEX seed_events_ts ON seed_events (ts)"))
        conn.execute(text(_SEED_AGG))
    if dialect == "postgresql":
        with trend.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with trend.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=1_000_000)
    args = p.parse_args()
    clock = FakeClock(MINUTE + 180_000)
    trend = scratch_trend(args.backend, server_url(args), clock)
    began = time.perf_counter()
    fill(trend, args.events)
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.events:,} events in one minute "
          f"(filled in {time.perf_counter() - began:.1f}s); median of {args.repeat}")
    runner = LevelRunner(trend.db, clock, LEVELS_BY_NAME["1m"])

    users_sql = {"sqlite": "trend_hll(user_id) FILTER (WHERE user_id IS NOT NULL)",
                 "postgresql": "CASE WHEN count(user_id) > 0 THEN hll_add_agg(hll_hash_text(user_id), 14, 5, -1, 1) "
                               "FILTER (WHERE user_id IS NOT NULL) END"}[
        "sqlite" if trend.db.dialect.name == "sqlite" else "postgresql"]
    bare_users_sql = _BARE.replace("user_events)", "user_events, users_sketch)").replace(
        "COUNT(user_id)", f"COUNT(user_id), {users_sql}")

    def variants(minute: int) -> list[tuple[str, Callable[[], object], Callable[[], None] | None]]:
        def dirty() -> None:
            with trend.db.write() as conn:
                mark(conn, "1m", [minute])

        def bare(sql: str) -> Callable[[], None]:
            def run() -> None:
                with trend.db.write() as conn:
                    conn.execute(text("DELETE FROM agg_1m WHERE bucket = :m"), {"m": minute})
                    conn.execute(text(sql.format(minute=minute)))
            return run

        def seed() -> None:
            with trend.db.write() as conn:
                conn.execute(text("DELETE FROM seed_agg"))
                if conn.execute(text(_SEED_COUNT.format(minute=minute))).scalar():
                    conn.execute(text(_SEED_GROUP.format(minute=minute)))

        return [("trend 1m job", runner.run, dirty), ("bare GROUP BY", bare(_BARE), None),
                ("bare GROUP BY + users", bare(bare_users_sql), None), ("seed-style", seed, None)]

    shapes = {"no users": MINUTE, "70 % users": USERS_MINUTE}
    results: dict[tuple[str, str], list[float]] = {}
    # Interleaved, so machine noise hits each alike.
    for _ in range(args.repeat):
        for shape, minute in shapes.items():
            for name, func, setup in variants(minute):
                results.setdefault((shape, name), []).append(median_seconds(func, 1, setup))
    medians = {variant: sorted(samples)[args.repeat // 2] for variant, samples in results.items()}
    print("| minute | variant | median s | ÷ bare | ÷ seed-style |")
    print("|---|---|---|---|---|")
    for (shape, name), median in medians.items():
        print(f"| {shape} | {name} | {median:.3f} | {median / medians[shape, 'bare GROUP BY']:.2f} | "
              f"{median / medians[shape, 'seed-style']:.2f} |")
    print(f"\nthe job with 70 % users ÷ the job with none: "
          f"{medians['70 % users', 'trend 1m job'] / medians['no users', 'trend 1m job']:.2f}")
    assert medians["no users", "trend 1m job"] > 0

    skip_samples = []
    for _ in range(2000):
        began = time.perf_counter()
        with trend.db.probe() as conn:
            any_dirty(conn, "1m", LEVELS_BY_NAME["1m"].closed_cutoff(clock.now_ms()))
        skip_samples.append(time.perf_counter() - began)
    run_samples = []
    for _ in range(300):
        began = time.perf_counter()
        report = runner.run()
        run_samples.append(time.perf_counter() - began)
        assert report.outcome == "skipped_no_data"
    count_samples = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        with trend.db.read() as conn:
            conn.execute(text(_SEED_COUNT.format(minute=MINUTE))).scalar()
        count_samples.append(time.perf_counter() - began)
    print()
    print("| skip path | median ms | p99 ms |")
    print("|---|---|---|")
    for name, samples in (("skip check (one index probe)", skip_samples),
                          ("whole skipped run (probe + run record write)", run_samples),
                          ("seed-style COUNT(*) on the 1M-event minute", count_samples)):
        print(f"| {name} | {percentile(samples, 50) * 1000:.3f} | {percentile(samples, 99) * 1000:.3f} |")
    trend.close()


if __name__ == "__main__":
    main()
