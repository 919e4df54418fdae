"""Shared helpers: side-by-side timing with medians, a scratch database, and result lines."""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql
from sqlalchemy.engine import make_url

from trend.clock import Clock
from trend.service import Trend


def median_seconds(func: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None) -> float:
    """The median wall time of ``func`` over ``repeat`` runs, ``setup`` untimed before each."""
    return statistics.median(latencies_ms(func, repeat, setup)) / 1000


def latencies_ms(func: Callable[[], object], samples: int, before: Callable[[], object] | None = None
                 ) -> list[float]:
    """Each run's wall time in ms, ``before`` untimed ahead of each."""
    times = []
    for _ in range(samples):
        if before is not None:
            before()
        began = time.perf_counter()
        func()
        times.append((time.perf_counter() - began) * 1000)
    return times


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", choices=["sqlite", "postgres", "citus", "mariadb"], default="sqlite")
    p.add_argument("--postgres-url", default=os.environ.get("TREND_TEST_POSTGRES_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/test"))
    p.add_argument("--citus-url", default=os.environ.get("TREND_TEST_CITUS_URL",
                                                         "postgresql://postgres@127.0.0.1:5450/test"),
                   help="the coordinator of a Citus cluster (scripts/citus-cluster.sh start starts one)")
    p.add_argument("--mariadb-url", default=os.environ.get("TREND_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test"))
    p.add_argument("--repeat", type=int, default=5)
    return p


def scratch_trend(backend: str, postgres_url: str, clock: Clock) -> Trend:
    """A Trend on an empty scratch database: a new SQLite file, or a new schema on PostgreSQL or on a
    Citus coordinator (pass its URL as ``postgres_url``; ``server_url`` picks it from the arguments)."""
    if backend == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="trend-bench-")) / "bench.db"
        return Trend(database_url=f"sqlite:///{path}", clock=clock, worker_enabled=False, log_level="WARNING",
                     worker_yield_ratio=0.0)
    if backend == "mariadb":
        name = f"bench_{os.getpid()}"
        server = make_url(postgres_url)
        with pymysql.connect(host=server.host, port=server.port or 3306, user=server.username,
                             password=server.password or "", autocommit=True) as admin, admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            cursor.execute(f"CREATE DATABASE {name}")
        return Trend(database_url=str(server.set(database=name)), clock=clock, worker_enabled=False,
                     log_level="WARNING", worker_yield_ratio=0.0)
    schema = f"bench_{os.getpid()}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    # public too: extensions such as hll live there.
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}options=-csearch_path%3D{schema},public"
    return Trend(database_url=url, clock=clock, worker_enabled=False, log_level="WARNING", worker_yield_ratio=0.0)



def empty_log(trend: Trend) -> None:
    """SQLite: copy the write-ahead log into the file and truncate it, so that the next variant does not
    pay for the checkpoints of the one before it. A no-op on PostgreSQL."""
    if trend.db.dialect.name == "sqlite":
        with trend.db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def server_url(args: argparse.Namespace) -> str:
    """The server a bench's ``--backend`` names: PostgreSQL's, the Citus coordinator's or MariaDB's URL."""
    return str({"citus": args.citus_url, "mariadb": args.mariadb_url}.get(args.backend, args.postgres_url))


def fill_a_day_of_searches(url: str, events: int, seed: int = 1) -> None:
    """A day of searches over a long tail of 20,000 keys (Pareto 1.1), from 50,000 people, rolled up."""
    rng = random.Random(seed)
    now = time.time()
    with Trend(database_url=url, worker_enabled=False, log_level="WARNING") as trend:
        for start in range(0, events, 10_000):
            trend.ingest([{"event": "search", "key": f"k{int(rng.paretovariate(1.1)) % 20_000}",
                           "ts": now - rng.random() * 86_000, "user_id": f"u{rng.randrange(50_000)}"}
                          for _ in range(min(10_000, events - start))])
        trend.rollup()
