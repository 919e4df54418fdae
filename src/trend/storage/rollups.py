"""Recompute one bucket of one level from its source: the GROUP BY that defines the rollup.

The measures' SQL comes from :data:`trend.measures.MEASURES` through the transaction's dialect, so
the recompute and the reads share one definition of every measure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func, literal, literal_column, null, select
from sqlalchemy.sql import Select
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from trend import measures as all_measures
from trend.measures import Measure
from trend.model import MINUTE_MS, Level
from trend.storage import data_versions
from trend.storage.schema import fact_events, level_table
from trend.storage.sketches import Distinct
from trend.storage.tx import Tx


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


@dataclass(frozen=True)
class Recomputed:
    rows: int
    events: int


def recompute(tx: Tx, level: Level, bucket: int) -> Recomputed:
    """Replace the bucket's rows with the GROUP BY of its source; keys that vanished are removed."""
    return recompute_many(tx, level, [bucket])[bucket]


def recompute_many(tx: Tx, level: Level, buckets: Sequence[int]) -> dict[int, Recomputed]:
    """:func:`recompute` for several buckets, a statement each for all of them."""
    table = level_table(level)
    in_buckets = table.c.bucket == buckets[0] if len(buckets) == 1 else table.c.bucket.in_(buckets)
    tx.dialect.before_recompute(tx.conn)
    tx.execute(table.delete().where(in_buckets))
    source = source_of(tx, level, buckets)
    query = (grouped(source, buckets[0], buckets[0] + level.width, literal(buckets[0])) if len(buckets) == 1
             else grouped_many(source, buckets, level.width))
    tx.execute(table.insert().from_select(row_columns(), query))
    if not tx.dialect.caps.sketches_in_sql:
        for bucket in buckets:
            _fill_sketches(tx, level, bucket)
    counted = (select(table.c.bucket, func.count(), func.coalesce(func.sum(table.c["count"]), 0))
               .where(in_buckets).group_by(table.c.bucket))
    found = dict.fromkeys(buckets, Recomputed(rows=0, events=0))
    for bucket, rows, events in map(tuple, tx.execute(counted)):
        found[int(bucket)] = Recomputed(rows=int(rows), events=int(events))
    for bucket in buckets:
        data_versions.bump(tx, level.name, bucket, bucket + level.width)
    return found


def _fill_sketches(tx: Tx, level: Level, bucket: int) -> None:
    """Without SQL sketches (a PostgreSQL lacking postgresql-hll), the INSERT left them NULL: fold each
    row's sketch in Python from its source's user_ids or stored sketches, and write it in."""
    table = level_table(level)
    below = tx.levels.source(level)
    for measure in (m for m in all_measures.MEASURES if m.is_sketch):
        source = fact_events if below is None else level_table(below)
        at = source.c.minute if below is None else source.c.bucket
        value = source.c[(measure.raw_input or "") if below is None else measure.column]
        query = select(source.c.event, source.c.segment, source.c.key, value.label("item")).where(
            at >= bucket, at < bucket + level.width, value.isnot(None))
        sketches: dict[tuple[str, str, str], Distinct] = defaultdict(Distinct)
        for row in tx.execute(query):
            sketch = sketches[(row.event, row.segment, row.key)]
            sketch.add(row.item) if below is None else sketch.merge(row.item)
        if not sketches:
            continue
        tx.dialect.set_column(tx.conn, table, ("bucket", "event", "segment", "key"), measure.column,
                              [(bucket, e, s, k, sketch.blob()) for (e, s, k), sketch in sketches.items()])
