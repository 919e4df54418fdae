"""The SQL of a bucket's GROUP BY: what a level is made of (raw events or the level below) and how its
measures fold. The recompute writes it (storage/write/rollups.py); reads of spans not yet rolled up
run the same SQL (storage/read/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, literal_column, null, select
from sqlalchemy.sql import Select
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from trend import measures as all_measures
from trend.measures import Measure
from trend.model import MINUTE_MS, Level
from trend.storage.shared.schema import fact_events, level_table
from trend.storage.shared.tx import Tx


def from_raw(tx: Tx, measures: Sequence[Measure] | None = None, *, sketches: bool = True
             ) -> list[ColumnElement[Any]]:
    """Each measure (every one by default) over raw events, labelled by its column. Without
    ``sketches``, a sketch is NULL: what it is over events without users."""
    f = fact_events.c
    measures = all_measures.MEASURES if measures is None else measures
    return [(null() if m.is_sketch and not sketches else
             tx.dialect.aggregate(m.from_raw, None if m.raw_input is None else f[m.raw_input])).label(m.column)
            for m in measures]


def merged(tx: Tx, columns: ReadOnlyColumnCollection[str, Any], measures: Sequence[Measure] | None = None, *,
           read: bool = False) -> list[ColumnElement[Any]]:
    """Each measure (every one by default) merged over rows that already hold it (a finer level, or a
    read's rows). With ``read``, a sketch comes out as its estimate: what a read shows."""
    measures = all_measures.MEASURES if measures is None else measures
    return [merged_one(tx, columns, m, read=read).label(m.column) for m in measures]


def merged_one(tx: Tx, columns: ReadOnlyColumnCollection[str, Any], measure: Measure, *,
               read: bool = False) -> ColumnElement[Any]:
    value = tx.dialect.aggregate(measure.merge, columns[measure.column])
    return tx.dialect.estimate(value) if read and measure.is_sketch else value


def row_columns() -> list[str]:
    """A rollup row's columns, in the order the GROUP BY of :func:`grouped` gives them."""
    return ["bucket", "event", "segment", "key", *all_measures.columns()]


@dataclass(frozen=True)
class Source:
    """Where a level reads from: its table, the bucket column, and its measures' aggregates."""

    table: Table
    bucket: ColumnElement[int]
    measures: list[ColumnElement[Any]]


def source_of(tx: Tx, level: Level, buckets: Sequence[int] = ()) -> Source:
    """The source of ``level``; when it is raw events and none of ``buckets`` has a user where the
    backend would pay for sketches anyway (``Dialect.has_users``), a source without them."""
    below = tx.levels.source(level)
    if below is None:
        sketches = not buckets or tx.dialect.has_users(tx.conn, min(buckets), max(buckets) + level.width)
        return Source(fact_events, fact_events.c.minute, from_raw(tx, sketches=sketches))
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


def grouped_many(source: Source, buckets: Sequence[int], width: int) -> Select[Any]:
    """:func:`grouped` for several buckets of ``width`` at once, grouped by bucket too."""
    c = source.table.c
    # The width inline: with bound parameters PostgreSQL would not see the GROUP BY's expression as the SELECT's.
    bucket = (source.bucket - source.bucket % literal_column(str(int(width)))).label("bucket")
    return (
        select(bucket, c.event, c.segment, c.key, *source.measures)
        .where(source.bucket >= min(buckets), source.bucket < max(buckets) + width, bucket.in_(buckets))
        .group_by(bucket, c.event, c.segment, c.key)
    )

