"""Recompute one bucket of one level from its source: the GROUP BY that defines the rollup.

The measures' SQL comes from :data:`trend.measures.MEASURES` through the transaction's dialect, so
the recompute and the reads share one definition of every measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func, literal, select
from sqlalchemy.sql import Select
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from trend.measures import MEASURE_COLUMNS, MEASURES, Measure
from trend.model import MINUTE_MS, Level
from trend.storage.engine import Tx
from trend.storage.schema import fact_events, level_table


def from_raw(tx: Tx, measures: Sequence[Measure] = MEASURES) -> list[ColumnElement[Any]]:
    """Each measure over raw events, labelled by its column."""
    f = fact_events.c
    return [tx.dialect.aggregate(m.from_raw, None if m.raw_input is None else f[m.raw_input]).label(m.column)
            for m in measures]


def merged(tx: Tx, columns: ReadOnlyColumnCollection[str, Any], measures: Sequence[Measure] = MEASURES, *,
           read: bool = False) -> list[ColumnElement[Any]]:
    """Each measure merged over rows that already hold it (a finer level, or a read's rows).

    With ``read``, a sketch comes out as its estimate: what a read shows."""
    return [merged_one(tx, columns, m, read=read).label(m.column) for m in measures]


def merged_one(tx: Tx, columns: ReadOnlyColumnCollection[str, Any], measure: Measure, *,
               read: bool = False) -> ColumnElement[Any]:
    value = tx.dialect.aggregate(measure.merge, columns[measure.column])
    return tx.dialect.estimate(value) if read and measure.is_sketch else value


@dataclass(frozen=True)
class Source:
    """Where a level reads from: its table, the bucket column, and its measures' aggregates."""

    table: Table
    bucket: ColumnElement[int]
    measures: list[ColumnElement[Any]]


def source_of(tx: Tx, level: Level) -> Source:
    below = tx.levels.source(level)
    if below is None:
        return Source(fact_events, fact_events.c.minute, from_raw(tx))
    table = level_table(below)
    return Source(table, table.c.bucket, merged(tx, table.c))


def grouped(source: Source, start: int, end: int, bucket_value: ColumnElement[int]) -> Select[Any]:
    """``SELECT bucket, event, segment, key, measures … GROUP BY event, segment, key`` over [start, end)."""
    c = source.table.c
    if end - start == MINUTE_MS:
        # An equality plus the stored bucket in GROUP BY lets SQLite walk the covering index in order.
        where: ColumnElement[bool] = source.bucket == start
        group: list[ColumnElement[Any]] = [source.bucket]
    else:
        where = and_(source.bucket >= start, source.bucket < end)
        group = []
    return (
        select(bucket_value.label("bucket"), c.event, c.segment, c.key, *source.measures)
        .where(where)
        .group_by(*group, c.event, c.segment, c.key)
    )


@dataclass(frozen=True)
class Recomputed:
    rows: int
    events: int


def recompute(tx: Tx, level: Level, bucket: int) -> Recomputed:
    """Replace the bucket's rows with the GROUP BY of its source; keys that vanished are removed."""
    table = level_table(level)
    tx.dialect.before_recompute(tx.conn)
    tx.execute(table.delete().where(table.c.bucket == bucket))
    query = grouped(source_of(tx, level), bucket, bucket + level.width, literal(bucket))
    tx.execute(table.insert().from_select(["bucket", "event", "segment", "key", *MEASURE_COLUMNS], query))
    rows, events = tuple(tx.execute(
        select(func.count(), func.coalesce(func.sum(table.c["count"]), 0)).where(table.c.bucket == bucket)
    ).one())
    return Recomputed(rows=int(rows), events=int(events))
