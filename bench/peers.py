"""trend beside what a user might pick instead, on the same events: ingest, time until the rollups
are current, ``top`` over 24h (p50) and the size on disk.

* trend on SQLite and on PostgreSQL: the events stored through trend's storage path in batches of
  10,000 (duplicate checks, markers; JSON decoding is measured by bench.file_ingest), then one
  catch-up through every level; ``top`` exact to the minute, warm (kept totals) and cold;
* DuckDB: the raw events in a table, each ``top`` a GROUP BY over the last 24 hours of them;
* ClickHouse embedded (chDB): a MergeTree of the raw events and the usual materialized view into an
  hourly SummingMergeTree, each ``top`` a GROUP BY over the view's last 24 whole hours (exact to the
  hour, not the minute: minute edges would need a second, finer view).

The events are written once to a Parquet file (by DuckDB) and every system reads the same rows.

    pip install -e '.[peers]'
    python -m bench.peers [--events 10000000] [--days 7] [--samples 30]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text

from bench.common import machine, median_seconds, parser, scratch_trend
from trend.clock import FakeClock
from trend.model import DAY_MS, MINUTE_MS

NOW = 1_763_016_630_000  # 2025-11-13 06:50:30 UTC
KEYS = 20_000


def _write_events(path: Path, events: int, days: int) -> None:
    """``events`` rows over ``days`` days ending at NOW: 3 event types, 3 segments, 20,000 Zipf keys,
    70 % with one of 200,000 users (the shape of bench/history.py)."""
    import duckdb

    start = NOW - days * DAY_MS
    step = days * DAY_MS // events
    duckdb.sql(f"""
        COPY (SELECT {start} + i * {step} + (i * 7919) % {step} AS ts,
                     CASE WHEN random() < 0.7 THEN 'search' WHEN random() < 0.67 THEN 'view'
                          ELSE 'purchase' END AS event,
                     ['', 'kr', 'us'][1 + floor(random() * 3)::INT] AS segment,
                     'k' || floor(exp(random() * ln({KEYS + 1})))::BIGINT AS key,
                     CASE WHEN random() < 0.7 THEN 'user-' || floor(random() * 200000)::BIGINT END AS user_id
              FROM range({events}) t(i)) TO '{path}' (FORMAT parquet)""")


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def run_trend(backend: str, parquet: Path, postgres_url: str, samples: int) -> dict[str, Any]:
    import duckdb

    clock = FakeClock(NOW)
    trend = scratch_trend(backend, postgres_url, clock)
    trend.db.ensure_schema()
    reader = duckdb.connect()
    rows = reader.execute(f"SELECT NULL, ts, event, segment, key, user_id, 1.0::DOUBLE, {NOW}, ts - ts % 60000 "
                          f"FROM '{parquet}'")
    began = time.perf_counter()
    while batch := rows.fetchmany(10_000):
        trend.ingestor.store_stored(batch)
    ingest = time.perf_counter() - began
    began = time.perf_counter()
    trend.rollup()
    rollup = time.perf_counter() - began
    warm = median_seconds(lambda: trend.top("search", window="24h"), samples) * 1000
    cold = median_seconds(lambda: trend.top("search", window="24h"), samples, lambda: clock.advance(MINUTE_MS)) * 1000
    clock.set(NOW)
    if backend == "sqlite":
        path = Path(str(trend.db.engine.url.database))
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    else:
        with trend.db.read() as tx:
            size = int(tx.execute(text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'")).scalar() or 0)
    trend.close()
    return {"ingest": ingest, "current": ingest + rollup, "top": warm, "top_cold": cold, "bytes": size}


def run_duckdb(parquet: Path, folder: Path, samples: int) -> dict[str, Any]:
    import duckdb

    path = folder / "peer.duckdb"
    db = duckdb.connect(str(path))
    began = time.perf_counter()
    db.execute(f"CREATE TABLE events AS SELECT * FROM '{parquet}'")
    db.execute("CHECKPOINT")
    ingest = time.perf_counter() - began
    end = NOW - NOW % MINUTE_MS + MINUTE_MS
    query = ("SELECT key, count(*) AS n FROM events WHERE event = 'search' AND ts >= ? AND ts < ? "
             "GROUP BY key ORDER BY n DESC, key LIMIT 10")
    top = median_seconds(lambda: db.execute(query, [end - DAY_MS, end]).fetchall(), samples) * 1000
    db.close()
    return {"ingest": ingest, "current": ingest, "top": top, "top_cold": top, "bytes": _folder_bytes(folder)}


def run_chdb(parquet: Path, folder: Path, samples: int) -> dict[str, Any]:
    from chdb import session

    data = folder / "chdb"
    open_session: Any = session.Session  # chdb's own annotations are partial
    db = open_session(str(data))
    db.query("CREATE DATABASE IF NOT EXISTS bench")
    db.query("""CREATE TABLE bench.events (ts Int64, event String, segment String, key String,
                user_id Nullable(String)) ENGINE = MergeTree ORDER BY (event, ts)""")
    db.query("""CREATE TABLE bench.hourly (hour Int64, event String, segment String, key String, n UInt64)
                ENGINE = SummingMergeTree ORDER BY (event, hour, segment, key)""")
    db.query("""CREATE MATERIALIZED VIEW bench.hourly_mv TO bench.hourly AS
                SELECT intDiv(ts, 3600000) * 3600000 AS hour, event, segment, key, count() AS n
                FROM bench.events GROUP BY hour, event, segment, key""")
    began = time.perf_counter()
    db.query(f"INSERT INTO bench.events SELECT ts, event, segment, key, user_id FROM file('{parquet}', Parquet)")
    ingest = time.perf_counter() - began
    hour_end = NOW - NOW % 3_600_000
    query = (f"SELECT key, sum(n) AS total FROM bench.hourly WHERE event = 'search' AND hour >= {hour_end - DAY_MS} "
             f"AND hour < {hour_end} GROUP BY key ORDER BY total DESC, key LIMIT 10")
    top = median_seconds(lambda: db.query(query, "CSV"), samples) * 1000
    db.close()
    return {"ingest": ingest, "current": ingest, "top": top, "top_cold": top, "bytes": _folder_bytes(data)}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--skip-postgres", action="store_true")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="trend-peers-"))
    parquet = folder / "events.parquet"
    _write_events(parquet, args.events, args.days)
    results: dict[str, dict[str, Any]] = {
        "trend, SQLite": run_trend("sqlite", parquet, args.postgres_url, args.samples)}
    if not args.skip_postgres:
        with psycopg.connect(args.postgres_url, connect_timeout=5):
            pass
        results["trend, PostgreSQL"] = run_trend("postgres", parquet, args.postgres_url, args.samples)
    duck = folder / "duck"
    os.makedirs(duck)
    results["DuckDB, GROUP BY over raw events"] = run_duckdb(parquet, duck, args.samples)
    results["ClickHouse (chDB), hourly SummingMergeTree view"] = run_chdb(parquet, folder, args.samples)
    base = results["trend, SQLite"]
    print(f"# {machine()}; {args.events:,} events over {args.days} days, {KEYS:,} Zipf keys; "
          f"top p50 of {args.samples}; ratios to trend on SQLite")
    print("| system | ingest s | until rollups current s | top 24h p50 ms (warm) | top 24h p50 ms (cold) "
          "| size MB | ÷ trend-SQLite: ingest, current, top warm, size |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratios = ", ".join(f"{r[k] / base[k]:.2f}" for k in ("ingest", "current", "top", "bytes"))
        print(f"| {name} | {r['ingest']:.1f} | {r['current']:.1f} | {r['top']:.2f} | {r['top_cold']:.2f} | "
              f"{r['bytes'] / 1e6:,.0f} | {ratios} |")


if __name__ == "__main__":
    main()
