"""Key totals of clean, closed spans, kept between reads under a stamp of what their rows are.

A ``top`` over 24 hours sums tens of thousands of keys over rollup rows that rarely change: only a
recompute or retention rewrites them, and both move their level's data version for the days they
touch (storage/shared/data_versions.py). Kept totals are stamped with those versions as the read's own
snapshot sees them; equal versions mean no row behind them has changed. Only the other spans (open
minutes, and on SQLite every raw minute) go to the source inside, each time.

A window moves by a minute between two reads a minute apart, and its plan changes only at the
edges, so totals are kept per source level, and the edges (every level but the coarsest) a bucket
at a time: a read in a new minute reads only the bucket that entered the window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from trend.measures import Fold, Measure
from trend.model import MINUTE_MS, RAW, Span
from trend.ranking import Ranked, Totals, ranked_with, summed
from trend.storage.read.read_sql import Filters
from trend.storage.read.sources import Point, TotalsSource
from trend.storage.shared import data_versions, stored_totals
from trend.storage.shared.markers import marker_versions
from trend.storage.shared.read_cache import ReadCache, Same, Sketch
from trend.storage.shared.tx import Tx

_NOTHING: Mapping[str, int] = MappingProxyType({})
# A kept entry of shown keys' figures starts afresh past this many keys, rather than grow without end.
_MOST_SHOWN = 4_096


def _additive(measure: Measure) -> bool:
    """Whole numbers that add up across spans: counts. Users do not, nor do float sums exactly."""
    return measure.merge is Fold.SUM and measure.kind == "integer"


class KeptByStamp:
    def __init__(self, tx: Tx, inner: TotalsSource, cache: ReadCache) -> None:
        self.tx = tx
        self.inner = inner
        self.cache = cache

    def keepable(self, span: Span) -> bool:
        """Rollup spans, which only a recompute or a retention delete changes; and, where the backend
        does not carry raw spans forward by seq, raw minutes that are closed, which change only with
        a new marker version. On SQLite recent late events mark closed minutes with every ingest, so a
        stamp of marker versions would void the whole plan's totals many times a second."""
        return span.source != RAW or (span.settled and not self.tx.dialect.caps.ordered_inserts)

    def _cacheable(self, spans: list[Span], filters: Filters, by: Measure) -> bool:
        return (filters.keys is None and _additive(by)
                and (self.tx.dialect.caps.ordered_inserts or any(self.keepable(span) for span in spans)))

    def _split(self, spans: list[Span]) -> tuple[list[Span], list[Span]]:
        return [s for s in spans if self.keepable(s)], [s for s in spans if not self.keepable(s)]

    # -- rankings and baselines of every key --

    def ranked(self, spans: list[Span], filters: Filters, by: Measure, limit: int | None, at_least: float) -> Ranked:
        """Kept totals plus the fresh spans' totals. The ranking itself is kept while both are the very
        objects kept: with hundreds of dirty minutes pending, adding ~10,000 keys of raw totals to the
        kept ones cost more than the rest of the read, and both stay the same until something is stored."""
        if not self._cacheable(spans, filters, by):
            return self.inner.ranked(spans, filters, by, limit, at_least)
        kept, fresh = self._split(spans)
        base = self._kept(kept, filters, by) if kept else Totals({})
        extra = self.inner.totals(fresh, filters, by) if fresh else _NOTHING
        entry, stamp = (filters.event, filters.segment, by.column, tuple(spans)), (Same(base), Same(extra), limit,
                                                                                   at_least)
        found = self.cache.rankings.get(entry, stamp)
        if found is None:
            found = ranked_with(base, extra, limit, at_least)
            self.cache.rankings.put(entry, stamp, found)
        return list(found)

    def tagged(self, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
        """Each plan's kept totals (rising's baseline windows change only when their rows do), plus the
        raw spans of the keys asked for."""
        if not any(self._cacheable(spans, filters.every_key(), by) for spans in plans):
            return self.inner.tagged(plans, filters, by)
        wanted = None if filters.keys is None else set(filters.keys)
        found: list[dict[str, int]] = []
        for spans in plans:
            kept, raw = self._split(spans)
            base = self._kept(kept, filters, by).by_key if kept else {}
            fresh = self.inner.totals(raw, filters.every_key(), by) if raw else {}
            if wanted is None:
                found.append({key: base.get(key, 0) + fresh.get(key, 0) for key in base.keys() | fresh.keys()})
            else:
                # ~200 candidates in each of 12–48 baseline windows against thousands of kept keys: walk
                # the candidates (``base.keys() & wanted`` walked the kept keys: a quarter of the read).
                found.append({key: total for key in wanted if (total := base.get(key, 0) + fresh.get(key, 0))})
        return found

    def _kept(self, kept: list[Span], filters: Filters, by: Measure, *, bucket_by_bucket: bool = False) -> Totals:
        """Every key's total over ``kept``: kept, or computed and kept."""
        stamp, entry = self._stamp(kept), self._entry(filters, by, kept)
        found = self.cache.totals.get(entry, stamp)
        if found is None:
            found = Totals(self._from_store(kept, filters, by)
                           or self._sum_of_parts(kept, filters, by, bucket_by_bucket))
            self.cache.totals.put(entry, stamp, found)
        return found

    def _from_store(self, kept: list[Span], filters: Filters, by: Measure) -> Mapping[str, int] | None:
        """The totals of full hours as the hourly job stored them (storage/shared/stored_totals.py),
        where it stored these very spans at this snapshot's data versions: a new process's first read
        of a 24h window reads one row instead of summing every hour's rows."""
        if not all(span.source == self.tx.levels.top.name for span in kept):
            return None
        part = stored_totals.part_name(filters.event, filters.segment, by.column, kept)
        return stored_totals.load(self.tx, part, data_versions.of_spans(self.tx, kept))

    def _sum_of_parts(self, kept: list[Span], filters: Filters, by: Measure, bucket_by_bucket: bool
                      ) -> Mapping[str, int]:
        """Each source level's spans kept apart, then added up; and the finer levels' (the window's
        edges) one bucket at a time. Raw minutes stay in one go: hundreds may be dirty at once."""
        parts: dict[str, list[Span]] = defaultdict(list)
        for span in kept:
            parts[span.source].append(span)
        if len(parts) > 1:
            coarsest = max(parts, key=self._width)
            totals = [self._kept(part, filters, by, bucket_by_bucket=source not in (coarsest, RAW))
                      for source, part in parts.items()]
        elif bucket_by_bucket and len(buckets := self._buckets_of(kept)) > 1:
            if not self.tx.dialect.caps.in_process:
                self._fetch_missing(buckets, filters, by)
            totals = [self._kept([bucket], filters, by) for bucket in buckets]
        else:
            return self.inner.totals(kept, filters.every_key(), by)
        return summed(part.by_key for part in totals)

    def _fetch_missing(self, buckets: list[Span], filters: Filters, by: Measure) -> None:
        """The buckets not kept yet, read in one statement (each tagged) and kept, where a statement is a
        round trip to a server: a new process misses every bucket of a window's edges, some twenty of
        them. Not on SQLite, where one statement each was faster than one for all (docs/benchmarks.md)."""
        missing = [bucket for bucket in buckets
                   if self.cache.totals.get(self._entry(filters, by, [bucket]), self._stamp([bucket])) is None]
        if len(missing) > 1:
            found = self.inner.tagged([[bucket] for bucket in missing], filters.every_key(), by)
            for bucket, totals in zip(missing, found, strict=True):
                self.cache.totals.put(self._entry(filters, by, [bucket]), self._stamp([bucket]), Totals(totals))

    @staticmethod
    def _entry(filters: Filters, by: Measure, kept: list[Span]) -> Hashable:
        return filters.event, filters.segment, by.column, tuple(kept)

    def _buckets_of(self, spans: list[Span]) -> list[Span]:
        """``spans`` cut into their level's buckets: a plan merges neighbouring buckets into one span, so
        the same minute comes in spans of other lengths as a window moves; only a bucket stays the same."""
        return [replace(span, start=start, end=start + self._width(span.source))
                for span in spans for start in range(span.start, span.end, self._width(span.source))]

    def _width(self, source: str) -> int:
        return MINUTE_MS if source == RAW else self.tx.levels.by_name[source].width

    def _stamp(self, kept: list[Span]) -> Hashable:
        """What the rows of ``kept`` are in this snapshot: the data version of each level and day read,
        and for dirty raw minutes their markers' versions and the finest level's data version of their
        days (a released marker comes back at version 1; its release moved that version)."""
        memo = self.tx.memo.stamps
        key = tuple(kept)
        if key not in memo:
            settled = [(span.start, span.end) for span in kept if span.source == RAW]
            memo[key] = (data_versions.of_spans(self.tx, kept),
                         marker_versions(self.tx, self.tx.levels.finest.name, settled))
        return memo[key]

    # -- the figures of the few keys a read shows --

    def values(self, spans: list[Span], filters: Filters, measures: Sequence[Measure]) -> dict[str, dict[str, Any]]:
        kept = [m for m in measures if self._keeps_by_key(spans, filters, m)]
        found: dict[str, dict[str, Any]] = defaultdict(dict)
        found.update(self.inner.values(spans, filters, [m for m in measures if m not in kept]))
        for measure in kept:
            figures = self._shown(spans, filters, measure)
            for key in set(found) | {key for key, value in figures.items() if value}:
                found[key][measure.column] = figures.get(key, 0)
        return dict(found)

    def _keeps_by_key(self, spans: list[Span], filters: Filters, measure: Measure) -> bool:
        return (filters.keys is not None and any(self.keepable(span) for span in spans)
                and (measure.is_sketch or _additive(measure)))

    def _shown(self, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, int]:
        """Each named key's value over the keepable spans is kept, stamped as kept totals are, and added
        to (a sum) or merged with (a sketch) its value over the other spans. Without this, the users
        figure of the 10 keys a ``top`` shows re-read all their rows on every request."""
        assert filters.keys is not None
        keys = list(dict.fromkeys(filters.keys))
        kept, fresh = self._split(spans)
        stamp, entry = self._stamp(kept), (filters.event, filters.segment, measure.column, tuple(kept))
        known = self.cache.by_key.get(entry, stamp) or {}
        missing = [key for key in keys if key not in known]
        if missing:
            computed = self._stored(kept, filters.of(missing), measure)
            base = known if len(known) < _MOST_SHOWN else {}
            known = {**base, **{key: computed.get(key) for key in missing}}
            self.cache.by_key.put(entry, stamp, known)
        keyed = filters.of(keys)
        if not measure.is_sketch:
            opened = self.inner.totals(fresh, keyed, measure) if fresh else _NOTHING
            return {key: (known.get(key) or 0) + opened.get(key, 0) for key in keys}
        sketched = self.inner.sketches(fresh, keyed, measure) if fresh else {}
        parts = {key: tuple(sketch for sketch in (known.get(key), sketched.get(key)) if sketch is not None)
                 for key in keys}
        return self.cache.estimated(parts, lambda missing: self.tx.dialect.estimates(self.tx.conn, missing))

    def _stored(self, spans: list[Span], filters: Filters, measure: Measure) -> Mapping[str, Any]:
        """Each key's value over ``spans`` as storage merges it: a sketch not estimated."""
        if not spans:
            return {}
        if measure.is_sketch:
            return self.inner.sketches(spans, filters, measure)
        return self.inner.totals(spans, filters, measure)

    # -- the rest goes inward --

    def totals(self, spans: list[Span], filters: Filters, by: Measure) -> Mapping[str, int]:
        return self.inner.totals(spans, filters, by)

    def sketches(self, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Sketch]:
        return self.inner.sketches(spans, filters, measure)

    def points(self, spans: list[Span], filters: Filters, width: int) -> list[Point]:
        return self.inner.points(spans, filters, width)
