"""Bulk ingest in events/s, side by side with a bare ``executemany`` into an unindexed table.

* ``trend store``: pre-validated rows through ``Ingestor.store`` (indexes, markers, dedup of event_ids);
* ``trend ingest``: JSON-like dicts through ``Trend.ingest``, validation included;
* ``bare bulk insert, same table``: the backend's bulk path (COPY on PostgreSQL, executemany on
  SQLite) putting the same tuples into ``fact_events`` with its indexes, without markers or duplicate
  checks: what the engine itself costs;
* ``bare bulk insert, no index``: the same into a table with no index at all;
* ``trend ingest, with user_id``: ``trend ingest`` with 70% of the events carrying one of 100,000 user
  ids, against the same events without (the covering index on SQLite grows by the id).

    python -m bench.ingest [--backend postgres] [--events 200000] [--batch 10000]
"""

from __future__ import annotations

import random
import statistics
import time

from sqlalchemy import BigInteger, Column, Float, MetaData, Table, Text, text
from tests.reference import clear_all

from bench.common import machine, parser, scratch_trend, server_url
from trend.clock import FakeClock
from trend.model import EventRow
from trend.service import Trend
from trend.storage.write.events import COLUMNS

NOW = 1_763_016_660_000


def make_events(count: int, keyed_share: float) -> list[dict[str, object]]:
    rng = random.Random(7)
    events: list[dict[str, object]] = []
    for n in range(count):
        event: dict[str, object] = {
            "event": rng.choice(("search", "view", "purchase")), "key": f"key-{int(rng.paretovariate(1.2)) % 5000}",
            "segment": rng.choice(("", "kr", "us")), "ts": (NOW - rng.randrange(3_600_000)) / 1000,
            "value": float(rng.randint(1, 5)),
        }
        if rng.random() < keyed_share:
            event["event_id"] = f"e-{n}"
        events.append(event)
    return events


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--keyed-share", type=float, default=0.1, help="share of events that carry an event_id")
    args = p.parse_args()
    trend = scratch_trend(args.backend, server_url(args), FakeClock(NOW))
    trend.db.ensure_schema()
    events = make_events(args.events, args.keyed_share)
    rows = [EventRow(ts=round(float(str(e["ts"])) * 1000), event=str(e["event"]), key=str(e["key"]),
                     segment=str(e["segment"]), value=float(str(e["value"])),
                     event_id=str(e["event_id"]) if "event_id" in e else None) for e in events]
    bare_table = Table("bare_events", MetaData(), Column("ts", BigInteger), Column("event", Text),
                       Column("segment", Text), Column("key", Text), Column("user_id", Text),
                       Column("value", Float(precision=53)), Column("event_id", Text),
                       Column("received_at", BigInteger))
    with trend.db.write() as conn:
        bare_table.create(conn.conn)  # in each backend's quoting: key is a reserved word on MariaDB
    bare_columns = ("ts", "event", "segment", "key", "user_id", "value", "event_id", "received_at")
    tuples = [(r.ts, r.event, r.segment, r.key, r.user_id, r.value, r.event_id, NOW) for r in rows]

    def batches(items: list, size: int) -> list[list]:  # type: ignore[type-arg]  # any item type
        return [items[i:i + size] for i in range(0, len(items), size)]

    def run_store() -> None:
        for part in batches(rows, args.batch):
            trend.ingestor.store(part)

    def run_ingest() -> None:
        for part in batches(events, args.batch):
            trend.ingest(part)

    rng = random.Random(3)
    with_users = [{**e, "user_id": f"user-{rng.randrange(100_000)}"} if rng.random() < 0.7 else e for e in events]

    def run_ingest_users() -> None:
        for part in batches(with_users, args.batch):
            trend.ingest(part)

    def run_bare() -> None:
        for part in batches(tuples, args.batch):
            with trend.db.write() as conn:
                trend.db.dialect.bulk_insert(conn.conn, "bare_events", bare_columns, part)

    indexed = [(r.event_id, r.ts, r.event, r.segment, r.key, r.user_id, r.value, NOW, r.minute) for r in rows]

    def run_bare_indexed() -> None:
        for part in batches(indexed, args.batch):
            with trend.db.write() as conn:
                trend.db.dialect.bulk_insert(conn.conn, "fact_events", COLUMNS, part)

    def reset() -> None:
        clear_all(trend)
        with trend.db.write() as conn:
            conn.execute(text("DELETE FROM bare_events"))

    samples: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        variants = (("trend store", run_store), ("trend ingest", run_ingest),
                    ("trend ingest, with user_id", run_ingest_users),
                    ("bare bulk insert, same table", run_bare_indexed), ("bare bulk insert, no index", run_bare))
        for name, func in variants:
            reset()
            began = time.perf_counter()
            func()
            samples.setdefault(name, []).append(args.events / (time.perf_counter() - began))
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.events:,} events in batches of {args.batch:,}, "
          f"{args.keyed_share:.0%} with event_id; median of {args.repeat}")
    print("| variant | events/s | ÷ bare, same table |")
    print("|---|---|---|")
    bare = statistics.median(samples["bare bulk insert, same table"])
    for name, values in samples.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:,.0f} | {rate / bare:.2f} |")
    with_ids = statistics.median(samples["trend ingest, with user_id"])
    print(f"\ningest with user_id ÷ without: {with_ids / statistics.median(samples['trend ingest']):.2f}")
    _report_check(trend, args.events)
    trend.close()


def _report_check(trend: Trend, expected: int) -> None:
    with trend.db.read() as conn:
        stored = conn.execute(text("SELECT COUNT(*) FROM bare_events")).scalar()
    assert stored == expected


if __name__ == "__main__":
    main()
