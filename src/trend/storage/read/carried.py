"""Raw spans carried forward by seq (SQLite): the totals of a read's raw spans are kept with the
newest seq they include, and the next read adds only the events stored since. At 1,000 events/s an
open minute holds up to 60,000, and a hot top list reads a few hundred new ones instead.

Sound where every stored event gets a seq above every seq committed before it (SQLite's one writer
and rowid), as long as no event is deleted: every deletion of raw events (retention, erasure) moves
the ``raw`` data version, which voids what is carried.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select

from trend.measures import Fold, Measure
from trend.model import RAW, Span
from trend.ranking import Ranked
from trend.storage.read.read_sql import Filters, stored_since
from trend.storage.read.sources import Point, TotalsSource
from trend.storage.shared import data_versions
from trend.storage.shared.bucket_sql import from_raw
from trend.storage.shared.read_cache import ReadCache, Sketch
from trend.storage.shared.schema import fact_events
from trend.storage.shared.tx import Tx
from trend.storage.sketches import Distinct

# Past this many keys, the sketches kept for a plan's raw spans start again from the keys shown.
_MOST_KEPT = 4_096


class RawCarried:
    def __init__(self, tx: Tx, inner: TotalsSource, cache: ReadCache) -> None:
        self.tx = tx
        self.inner = inner
        self.cache = cache

    def _newest_seq(self) -> int:
        """The newest seq in this snapshot, read once per transaction."""
        if self.tx.memo.newest_seq is None:
            self.tx.memo.newest_seq = int(self.tx.execute(select(func.max(fact_events.c.seq))).scalar() or 0)
        return self.tx.memo.newest_seq

    def _raw_version(self) -> int:
        return data_versions.current(self.tx, [RAW])[RAW]

    def totals(self, spans: list[Span], filters: Filters, by: Measure) -> Mapping[str, int]:
        if not spans or by.from_raw is not Fold.COUNT or any(span.source != RAW for span in spans):
            return self.inner.totals(spans, filters, by)
        if filters.keys is not None:  # every key's totals are carried forward; a keyed read picks its own
            every = self.totals(spans, filters.every_key(), by)
            return {key: every[key] for key in filters.keys if key in every}
        raw_version, upto = self._raw_version(), self._newest_seq()
        entry = (filters.event, filters.segment, by.column, tuple(spans))
        latest = self.cache.raw.latest(entry)
        kept_upto, kept = latest[1] if latest is not None and latest[0] == raw_version else (upto + 1, {})
        if kept_upto == upto:
            return kept
        if kept_upto < upto:
            totals = dict(kept)
            for key, value in self._counted_since(spans, filters, by, kept_upto, upto).items():
                totals[key] = totals.get(key, 0) + value
        else:  # nothing kept, or kept by a reader with a newer snapshot than this one's
            totals = dict(self.inner.totals(spans, filters, by))
        self.cache.raw.put(entry, raw_version, (upto, totals))
        return totals

    def _counted_since(self, spans: list[Span], filters: Filters, by: Measure, after: int, upto: int
                       ) -> dict[str, int]:
        f = fact_events.c
        query = (select(f.key, *from_raw(self.tx, [by])).where(*stored_since(self.tx, spans, filters, after, upto))
                 .group_by(f.key))
        return {row.key: int(row._mapping[by.column]) for row in self.tx.execute(query)}

    def sketches(self, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Sketch]:
        """Each shown key's sketch, kept with the seq it covers: only the users of the events stored
        since are added; the 10 most popular keys hold a large share of an open minute's events."""
        if not spans or measure.raw_input is None or filters.keys is None or any(s.source != RAW for s in spans):
            return self.inner.sketches(spans, filters, measure)
        upto, raw_version = self._newest_seq(), self._raw_version()
        entry = (filters.event, filters.segment, measure.column, tuple(spans))
        by_key = dict(self.cache.raw_sketches.get(entry, raw_version) or {})
        # A key kept by a reader with a newer snapshot than this one's is read again, as a new one is.
        fresh = [key for key in filters.keys if key not in by_key or by_key[key][0] > upto]
        if fresh:
            computed = self.inner.sketches(spans, filters.of(fresh), measure)
            by_key.update({key: (upto, computed.get(key)) for key in fresh})
        behind: dict[int, list[str]] = defaultdict(list)
        for key in filters.keys:
            if by_key[key][0] < upto:
                behind[by_key[key][0]].append(key)
        for after, keys in behind.items():
            by_key.update(self._added_since(spans, filters.of(keys), measure, after, upto, by_key))
        if len(by_key) > _MOST_KEPT:  # a long run of different keys starts afresh
            by_key = {key: by_key[key] for key in filters.keys}
        self.cache.raw_sketches.put(entry, raw_version, by_key)
        return {key: by_key[key][1] for key in filters.keys}

    def _added_since(self, spans: list[Span], filters: Filters, measure: Measure, after: int, upto: int,
                     by_key: Mapping[str, tuple[int, Sketch]]) -> dict[str, tuple[int, Sketch]]:
        f = fact_events.c
        item = f[measure.raw_input or ""]
        query = select(f.key, item.label("item")).where(
            *stored_since(self.tx, spans, filters, after, upto), item.isnot(None))
        added: dict[str, Distinct] = {}
        for row in self.tx.execute(query):
            if row.key not in added:
                added[row.key] = Distinct()
                added[row.key].merge(by_key[row.key][1])
            added[row.key].add(row.item)
        assert filters.keys is not None
        return {key: (upto, added[key].blob() if key in added else by_key[key][1]) for key in filters.keys}

    def ranked(self, spans: list[Span], filters: Filters, by: Measure, limit: int | None, at_least: float) -> Ranked:
        return self.inner.ranked(spans, filters, by, limit, at_least)

    def tagged(self, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
        return self.inner.tagged(plans, filters, by)

    def values(self, spans: list[Span], filters: Filters, measures: Sequence[Measure]) -> dict[str, dict[str, Any]]:
        return self.inner.values(spans, filters, measures)

    def points(self, spans: list[Span], filters: Filters, width: int) -> list[Point]:
        return self.inner.points(spans, filters, width)
