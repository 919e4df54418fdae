"""The statements of a read: the rows a plan's spans name, from whichever table each names, as one
``UNION ALL``; the key seeks of a keyed read; and the events stored since a seq."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, literal, or_, select, union_all
from sqlalchemy.sql import Subquery

from trend.measures import Measure
from trend.model import RAW, Span
from trend.storage.shared.bucket_sql import from_raw
from trend.storage.shared.schema import dimensions, fact_events, level_table
from trend.storage.shared.tx import Tx

# Up to this many keys, each branch of a read filters by them itself, which lets it use an index.
FEW_KEYS = 64


@dataclass(frozen=True)
class Filters:
    event: str
    segment: str | None = None  # None: every segment, summed
    keys: Sequence[str] | None = None  # None: every key

    def every_key(self) -> Filters:
        return replace(self, keys=None)

    def of(self, keys: Sequence[str]) -> Filters:
        return replace(self, keys=keys)


def ranges(column: ColumnElement[int], spans: Sequence[Span]) -> ColumnElement[bool]:
    return or_(*(and_(column >= span.start, column < span.end) for span in spans))


def filtered(tx: Tx, columns: Any, filters: Filters) -> list[ColumnElement[bool]]:
    where = [columns.event == filters.event]
    if filters.segment is not None:
        where.append(columns.segment == filters.segment)
    if filters.keys is not None:
        where.append(tx.dialect.one_of(columns.key, filters.keys))
    return where


def source_select(tx: Tx, source: str, spans: list[Span], filters: Filters, measures: Sequence[Measure],
                  tag: int | None) -> Select[Any]:
    """(bucket, key, [tag,] measures) of one table over ``spans``: raw events grouped by minute, or a level's rows."""
    tag_column = [literal(tag).label("tag")] if tag is not None else []
    if source == RAW:
        f = fact_events.c
        return (
            select(f.minute.label("bucket"), f.key, *tag_column, *from_raw(tx, measures))
            .where(ranges(f.minute, spans), *filtered(tx, f, filters))
            .group_by(f.minute, f.key)
        )
    level = tx.levels.by_name[source]
    c = level_table(level).c
    seek = filters.keys is not None and not tx.dialect.caps.has_key_index(level)
    where = primary_key_seeks(tx, c, level.width, spans, filters) if seek else [ranges(c.bucket, spans),
                                                                            *filtered(tx, c, filters)]
    return select(c.bucket, c.key, *tag_column, *(c[m.column] for m in measures)).where(*where)


def primary_key_seeks(tx: Tx, columns: Any, width: int, spans: list[Span], filters: Filters
                      ) -> list[ColumnElement[bool]]:
    """A keyed read of a table without an index by key (SQLite's finer levels): every bucket, segment
    and key it names, as equalities on the primary key, so each is one seek rather than a walk over
    every key's rows in the spans."""
    assert filters.keys is not None
    buckets = [bucket for span in spans for bucket in range(span.start, span.end, width)]
    segment = (columns.segment == filters.segment if filters.segment is not None
               # Every segment of the event is in trend_dimensions: ingest adds it with the event.
               else columns.segment.in_(select(dimensions.c.segment).where(dimensions.c.event == filters.event)))
    return [columns.bucket.in_(select(tx.dialect.listed_numbers(buckets))), columns.event == filters.event, segment,
            tx.dialect.one_of(columns.key, filters.keys)]


def by_source(spans: list[Span], *, keyed: bool = False) -> list[tuple[str, list[Span]]]:
    """The spans grouped by the table they read, for one branch each. ``keyed`` (the read names a few
    keys): one branch per span instead, because an OR of ranges steers SQLite off the key index, to
    every key's rows in each range (28 ms for the 10 keys a 24h top shows, against 0.2)."""
    if keyed:
        return [(span.source, [span]) for span in spans]
    grouped: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        grouped[span.source].append(span)
    return list(grouped.items())


def plan_rows(tx: Tx, plans: Sequence[list[Span]], filters: Filters, measures: Sequence[Measure], *,
              tagged: bool = False) -> Subquery | None:
    """UNION ALL of the rows every span names: (bucket, key, [tag,] one column per measure asked for).
    With ``tagged``, each plan's rows carry its index in ``plans`` as ``tag``."""
    many = filters.keys is not None and len(filters.keys) > FEW_KEYS
    branch = filters.every_key() if many else filters
    selects = [source_select(tx, source, source_spans, branch, measures, index if tagged else None)
               for index, spans in enumerate(plans)
               for source, source_spans in by_source(spans, keyed=branch.keys is not None)]
    if not selects:
        return None
    rows = union_all(*selects) if len(selects) > 1 else selects[0]
    if not many:
        return rows.subquery("rows")
    # Many keys (rising's candidates): one semi-join of the whole union with the key list, not a copy
    # in every branch; each copy costs planning and, on PostgreSQL, shipping to every parallel worker.
    every = rows.subquery("every_row")
    assert filters.keys is not None
    return select(every).where(every.c.key.in_(select(tx.dialect.listed(filters.keys)))).subquery("rows")


def stored_since(tx: Tx, spans: list[Span], filters: Filters, after: int, upto: int) -> list[ColumnElement[bool]]:
    """The events with ``after < seq <= upto`` in ``spans`` that ``filters`` match. The minute is read
    unindexed, so SQLite walks the rowid range of the new events only."""
    f = fact_events.c
    return [f.seq > after, f.seq <= upto, ranges(tx.dialect.unindexed(f.minute), spans), *filtered(tx, f, filters)]
