"""Recompute one bucket of one level from its source: the GROUP BY that defines the rollup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, func, literal, select
from sqlalchemy.sql import Select

from trend.model import LEVELS_BY_NAME, MINUTE_MS, Level
from trend.storage.schema import agg_1h, agg_1m, agg_5m, fact_events

LEVEL_TABLES: dict[str, Table] = {"1m": agg_1m, "5m": agg_5m, "1h": agg_1h}


@dataclass(frozen=True)
class Source:
    """Where a level reads from, and how its measures combine."""

    table: Table
    bucket: ColumnElement[int]
    count: ColumnElement[int]
    total: ColumnElement[float]
    low: ColumnElement[float]
    high: ColumnElement[float]


def _agg_source(table: Table) -> Source:
    c = table.c
    return Source(table, c.bucket, func.sum(c.count), func.sum(c.value_sum), func.min(c.value_min),
                  func.max(c.value_max))


RAW_SOURCE = Source(fact_events, fact_events.c.minute, func.count(), func.sum(fact_events.c.value),
                    func.min(fact_events.c.value), func.max(fact_events.c.value))
LEVEL_SOURCES: dict[str, Source] = {"1m": RAW_SOURCE, "5m": _agg_source(agg_1m), "1h": _agg_source(agg_5m)}


def grouped(source: Source, start: int, end: int, bucket_value: ColumnElement[int]) -> Select[Any]:
    """``SELECT bucket, event, segment, key, measures … GROUP BY event, segment, key`` over [start, end)."""
    c = source.table.c
    single_bucket = end - start == MINUTE_MS
    if single_bucket:
        # An equality plus the stored bucket in GROUP BY lets SQLite walk the covering index in order.
        where: ColumnElement[bool] = source.bucket == start
        group: list[ColumnElement[Any]] = [source.bucket]
    else:
        where = and_(source.bucket >= start, source.bucket < end)
        group = []
    return (
        select(bucket_value.label("bucket"), c.event, c.segment, c.key, source.count.label("count"),
               source.total.label("value_sum"), source.low.label("value_min"), source.high.label("value_max"))
        .where(where)
        .group_by(*group, c.event, c.segment, c.key)
    )


@dataclass(frozen=True)
class Recomputed:
    rows: int
    events: int


def recompute(conn: Connection, level: Level, bucket: int) -> Recomputed:
    """Replace the bucket's rows with the GROUP BY of its source; keys that vanished are removed."""
    table = LEVEL_TABLES[level.name]
    conn.execute(table.delete().where(table.c.bucket == bucket))
    query = grouped(LEVEL_SOURCES[level.name], bucket, bucket + level.width, literal(bucket))
    columns = ["bucket", "event", "segment", "key", "count", "value_sum", "value_min", "value_max"]
    conn.execute(table.insert().from_select(columns, query))
    rows, events = conn.execute(
        select(func.count(), func.coalesce(func.sum(table.c.count), 0)).where(table.c.bucket == bucket)
    ).one()
    return Recomputed(rows=int(rows), events=int(events))


def parent_of(level: Level, bucket: int) -> tuple[Level, int] | None:
    if level.parent is None:
        return None
    parent = LEVELS_BY_NAME[level.parent]
    return parent, bucket - bucket % parent.width
