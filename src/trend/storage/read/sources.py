"""Where a read's figures come from: a :class:`TotalsSource`, and the plain one, which asks SQL.

A read composes its source once per transaction (storage/read/reads.py): the SQL source at the bottom;
around it, where the backend needs them, sketches folded in Python (storage/read/python_sketches.py), raw
totals carried forward by seq (storage/read/carried.py), and totals kept between reads under a stamp
(storage/read/kept.py). Each layer answers what it knows better and hands the rest inward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import select

from trend import measures as all_measures
from trend.measures import Measure
from trend.model import Span
from trend.ranking import Ranked
from trend.storage.read.read_sql import Filters, plan_rows
from trend.storage.shared.bucket_sql import merged, merged_one
from trend.storage.shared.read_cache import Sketch
from trend.storage.shared.tx import Tx


@dataclass(frozen=True)
class Point:
    """One bucket of a series: its value of every measure, by column name."""

    bucket: int
    measures: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.measures["count"])

    @classmethod
    def empty(cls, bucket: int) -> Point:
        return cls(bucket, {m.column: m.empty for m in all_measures.MEASURES})


class TotalsSource(Protocol):
    """Figures by key over a read's spans, in one transaction. Values are what a read shows (a sketch
    as its estimate), except :meth:`sketches`, which gives sketches as the backend stores them."""

    def totals(self, spans: list[Span], filters: Filters, by: Measure) -> Mapping[str, int]:
        """Every key's value of ``by`` (of the keys of ``filters``, or of every key with events)."""

    def sketches(self, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Sketch]:
        """Each key's sketch of ``measure``, not estimated."""

    def ranked(self, spans: list[Span], filters: Filters, by: Measure, limit: int | None,
               at_least: float) -> Ranked:
        """Keys by ``by``, highest first, those with at least ``at_least``; ties by code point."""

    def tagged(self, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
        """Per plan, the value of ``by`` of every key with events in it."""

    def values(self, spans: list[Span], filters: Filters, measures: Sequence[Measure]) -> dict[str, dict[str, Any]]:
        """For the keys of ``filters``: each measure's value, by column."""

    def points(self, spans: list[Span], filters: Filters, width: int) -> list[Point]:
        """Every measure per ``width``-wide bucket; buckets without events are absent."""


class SqlSource:
    """Everything in SQL: one statement per answer, over :func:`~trend.storage.read.read_sql.plan_rows`.
    Sketch measures only where the backend sketches in SQL; elsewhere the layer above folds them."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.in_sql = [m for m in all_measures.MEASURES if tx.dialect.caps.sketches_in_sql or not m.is_sketch]

    def totals(self, spans: list[Span], filters: Filters, by: Measure) -> Mapping[str, int]:
        rows = plan_rows(self.tx, [spans], filters, [by])
        if rows is None:
            return {}
        total = merged_one(self.tx, rows.c, by, read=True)
        query = select(rows.c.key, total.label("total")).group_by(rows.c.key)
        # Fetched at once and unpacked: a window's edge bucket holds thousands of keys of a long tail,
        # and fetching them row by row with attribute access cost twice the statement itself.
        value = by.python_value
        return {key: value(found) for key, found in cast("list[tuple[str, Any]]", self.tx.execute(query).all())}

    def sketches(self, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Sketch]:
        rows = plan_rows(self.tx, [spans], filters, [measure]) if spans else None
        if rows is None:
            return {}
        query = select(rows.c.key, merged_one(self.tx, rows.c, measure).label("sketch")).group_by(rows.c.key)
        return {row.key: row.sketch for row in self.tx.execute(query)}

    def ranked(self, spans: list[Span], filters: Filters, by: Measure, limit: int | None,
               at_least: float) -> Ranked:
        rows = plan_rows(self.tx, [spans], filters, [by])
        if rows is None:
            return []
        total = merged_one(self.tx, rows.c, by, read=True)
        query = (select(rows.c.key, total.label("total")).group_by(rows.c.key).having(total >= at_least)
                 .order_by(total.desc(), self.tx.dialect.code_point_order(rows.c.key)))
        if limit is not None:
            query = query.limit(limit)
        return [(row.key, by.python_value(row.total)) for row in self.tx.execute(query)]

    def tagged(self, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
        found: list[dict[str, int]] = [{} for _ in plans]
        rows = plan_rows(self.tx, plans, filters, [by], tagged=True)
        if rows is None:
            return found
        total = merged_one(self.tx, rows.c, by, read=True)
        query = select(rows.c.tag, rows.c.key, total.label("total")).group_by(rows.c.tag, rows.c.key)
        value = by.python_value
        for tag, key, total in cast("list[tuple[int, str, Any]]", self.tx.execute(query).all()):  # as totals()
            found[int(tag)][key] = value(total)
        return found

    def values(self, spans: list[Span], filters: Filters, measures: Sequence[Measure]) -> dict[str, dict[str, Any]]:
        measures = [m for m in measures if m in self.in_sql]
        rows = plan_rows(self.tx, [spans], filters, measures) if measures else None
        if rows is None:
            return {}
        query = select(rows.c.key, *merged(self.tx, rows.c, measures, read=True)).group_by(rows.c.key)
        return {row.key: {m.column: m.python_value(row._mapping[m.column]) for m in measures}
                for row in self.tx.execute(query)}

    def points(self, spans: list[Span], filters: Filters, width: int) -> list[Point]:
        rows = plan_rows(self.tx, [spans], filters, self.in_sql)
        if rows is None:
            return []
        bucket = (rows.c.bucket - rows.c.bucket % width).label("point_bucket")
        query = select(bucket, *merged(self.tx, rows.c, self.in_sql, read=True)).group_by(bucket).order_by(bucket)
        return [Point(int(r.point_bucket), {m.column: m.python_value(r._mapping[m.column]) for m in self.in_sql})
                for r in self.tx.execute(query)]
