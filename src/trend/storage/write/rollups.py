"""Recompute one bucket of one level from its source: the GROUP BY that defines the rollup.

The measures' SQL comes from :data:`trend.measures.MEASURES` through the transaction's dialect, so
the recompute and the reads share one definition of every measure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, literal, select

from trend import measures as all_measures
from trend.model import Level
from trend.storage.shared import data_versions
from trend.storage.shared.bucket_sql import grouped, grouped_many, row_columns, source_of
from trend.storage.shared.schema import fact_events, level_table
from trend.storage.shared.tx import Tx
from trend.storage.sketches import Distinct


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
