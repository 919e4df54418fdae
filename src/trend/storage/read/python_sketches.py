"""Users sketches folded in trend's process, for a PostgreSQL without postgresql-hll (TREND_HLL):
raw spans add their user_ids, rollup spans merge their stored sketches, and every other measure
goes to the source inside. Same algorithm and bytes as SQLite's, so the accuracy holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from trend import measures as all_measures
from trend.measures import Measure
from trend.model import RAW, Span
from trend.ranking import Ranked, ranked
from trend.storage.read.read_sql import Filters, by_source, filtered, ranges
from trend.storage.read.sources import Point, TotalsSource
from trend.storage.shared.read_cache import Sketch
from trend.storage.shared.schema import fact_events, level_table
from trend.storage.shared.tx import Tx
from trend.storage.sketches import Distinct

Group = Callable[[int, int, str], Hashable]  # (plan index, bucket, key) → what a sketch is folded by


def _by_key(_tag: int, _bucket: int, key: str) -> Hashable:
    return key


class PythonSketches:
    def __init__(self, tx: Tx, inner: TotalsSource) -> None:
        self.tx = tx
        self.inner = inner

    def _folded(self, plans: Sequence[list[Span]], filters: Filters, measure: Measure, group: Group
                ) -> dict[Hashable, Distinct]:
        folded: dict[Hashable, Distinct] = defaultdict(Distinct)
        for index, spans in enumerate(plans):
            for source, source_spans in by_source(spans):
                raw = source == RAW
                table = fact_events if raw else level_table(self.tx.levels.by_name[source])
                bucket = table.c.minute if raw else table.c.bucket
                value = table.c[(measure.raw_input or "") if raw else measure.column]
                query = select(bucket.label("at"), table.c.key, value.label("item")).where(
                    ranges(bucket, source_spans), *filtered(self.tx, table.c, filters), value.isnot(None))
                for row in self.tx.execute(query):
                    sketch = folded[group(index, int(row.at), row.key)]
                    sketch.add(row.item) if raw else sketch.merge(row.item)
        return dict(folded)

    def _estimates(self, plans: Sequence[list[Span]], filters: Filters, measure: Measure, group: Group
                   ) -> dict[Any, int]:
        return {where: sketch.estimate() for where, sketch in self._folded(plans, filters, measure, group).items()}

    def totals(self, spans: list[Span], filters: Filters, by: Measure) -> Mapping[str, int]:
        if not by.is_sketch:
            return self.inner.totals(spans, filters, by)
        return {str(key): value for key, value in self._estimates([spans], filters, by, _by_key).items()}

    def sketches(self, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Sketch]:
        if not measure.is_sketch:
            return self.inner.sketches(spans, filters, measure)
        folded = self._folded([spans], filters, measure, _by_key) if spans else {}
        return {str(key): sketch.blob() for key, sketch in folded.items()}

    def ranked(self, spans: list[Span], filters: Filters, by: Measure, limit: int | None, at_least: float) -> Ranked:
        if not by.is_sketch:
            return self.inner.ranked(spans, filters, by, limit, at_least)
        return ranked(self.totals(spans, filters, by).items(), at_least, limit)

    def tagged(self, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
        if not by.is_sketch:
            return self.inner.tagged(plans, filters, by)
        found: list[dict[str, int]] = [{} for _ in plans]
        for (tag, key), value in self._estimates(plans, filters, by, lambda tag, _bucket, key: (tag, key)).items():
            found[tag][key] = value
        return found

    def values(self, spans: list[Span], filters: Filters, measures: Sequence[Measure]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = defaultdict(dict)
        found.update(self.inner.values(spans, filters, [m for m in measures if not m.is_sketch]))
        for measure in (m for m in measures if m.is_sketch):
            folded = self.totals(spans, filters, measure)
            for key in set(found) | {key for key, value in folded.items() if value}:
                found[key][measure.column] = folded.get(key, 0)
        return dict(found)

    def points(self, spans: list[Span], filters: Filters, width: int) -> list[Point]:
        found = self.inner.points(spans, filters, width)
        for measure in (m for m in all_measures.MEASURES if m.is_sketch):
            folded = self._estimates([spans], filters, measure, lambda _tag, at, _key: at - at % width)
            for point in found:
                point.measures[measure.column] = folded.get(point.bucket, measure.empty)
        return found
