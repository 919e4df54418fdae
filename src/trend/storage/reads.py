"""Exact reads: the rows of a read plan, from whichever table each span names, in one statement."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select, text, union_all
from sqlalchemy.sql import Subquery

from trend.measures import MEASURES, MEASURES_BY_COLUMN, Fold, Measure
from trend.model import MINUTE_MS, RAW, Span
from trend.storage.dialects import json_values
from trend.storage.engine import Tx
from trend.storage.markers import marker_versions
from trend.storage.rollups import from_raw, merged, merged_one
from trend.storage.schema import dimensions, fact_events, has_key_index, level_table
from trend.storage.sketches import Distinct
from trend.storage.totals_cache import RawSketches, RawTotals, Sketch, Totals, current_versions, partitions


@dataclass(frozen=True)
class Filters:
    event: str
    segment: str | None = None  # None: every segment, summed
    keys: Sequence[str] | None = None  # None: every key


def _ranges(column: ColumnElement[int], spans: list[Span]) -> ColumnElement[bool]:
    return or_(*(and_(column >= span.start, column < span.end) for span in spans))


def _filtered(tx: Tx, columns: Any, filters: Filters) -> list[ColumnElement[bool]]:
    where = [columns.event == filters.event]
    if filters.segment is not None:
        where.append(columns.segment == filters.segment)
    if filters.keys is not None:
        where.append(tx.dialect.one_of(columns.key, filters.keys))
    return where


def _source_select(tx: Tx, source: str, spans: list[Span], filters: Filters, measures: Sequence[Measure],
                   tag: int | None) -> Select[Any]:
    tag_column = [literal(tag).label("tag")] if tag is not None else []
    if source == RAW:
        f = fact_events.c
        return (
            select(f.minute.label("bucket"), f.key, *tag_column, *from_raw(tx, measures))
            .where(_ranges(f.minute, spans), *_filtered(tx, f, filters))
            .group_by(f.minute, f.key)
        )
    level = tx.levels.by_name[source]
    c = level_table(level).c
    seek = filters.keys is not None and not has_key_index(level, tx.conn.dialect.name)
    where = _primary_key_seeks(tx, c, level.width, spans, filters) if seek else [_ranges(c.bucket, spans),
                                                                             *_filtered(tx, c, filters)]
    return select(c.bucket, c.key, *tag_column, *(c[m.column] for m in measures)).where(*where)


def _primary_key_seeks(tx: Tx, columns: Any, width: int, spans: list[Span], filters: Filters
                       ) -> list[ColumnElement[bool]]:
    """A keyed read of a table without an index by key (SQLite's finer levels): every bucket, segment
    and key it names, as equalities on the primary key, so each is one seek rather than a walk over
    every key's rows in the spans. Only SQLite drops that index, so the lists are SQLite's json_each."""
    assert filters.keys is not None
    buckets = [bucket for span in spans for bucket in range(span.start, span.end, width)]
    segment = (columns.segment == filters.segment if filters.segment is not None
               # Every segment of the event is in trend_dimensions: ingest adds it with the event.
               else columns.segment.in_(select(dimensions.c.segment).where(dimensions.c.event == filters.event)))
    return [columns.bucket.in_(select(json_values(buckets))), columns.event == filters.event, segment,
            tx.dialect.one_of(columns.key, filters.keys)]


def _by_source(spans: list[Span], *, keyed: bool = False) -> list[tuple[str, list[Span]]]:
    """The spans grouped by the table they read, for one branch each. ``keyed`` (the read names a few
    keys): one branch per span instead, because an OR of ranges steers SQLite off the key index, to
    every key's rows in each range (28 ms for the 10 keys a 24h top shows, against 0.2)."""
    if keyed:
        return [(span.source, [span]) for span in spans]
    by_source: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_source[span.source].append(span)
    return list(by_source.items())


# Up to this many keys, each branch of a read filters by them itself, which lets it use an index.
_FEW_KEYS = 64


def plan_rows(tx: Tx, plans: Sequence[list[Span]], filters: Filters, measures: Sequence[Measure] = MEASURES, *,
              tagged: bool = False) -> Subquery | None:
    """UNION ALL of the rows every span names: (bucket, key, [tag,] one column per measure asked for).

    With ``tagged``, each plan's rows carry its index in ``plans`` as ``tag``.
    """
    many = filters.keys is not None and len(filters.keys) > _FEW_KEYS
    branch = replace(filters, keys=None) if many else filters
    keyed = branch.keys is not None
    selects = [_source_select(tx, source, source_spans, branch, measures, index if tagged else None)
               for index, spans in enumerate(plans) for source, source_spans in _by_source(spans, keyed=keyed)]
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


def ranked_keys(tx: Tx, spans: list[Span], filters: Filters, by: Measure, *,
                limit: int | None = None, at_least: int = 1) -> list[tuple[str, int]]:
    """Keys by the measure ``by`` (count or users), highest first, those with at least ``at_least``;
    ties go to the key that sorts first (by code point)."""
    if limit is not None and by.bounded_by is not None:
        return _ranked_within_bound(tx, spans, filters, by, MEASURES_BY_COLUMN[by.bounded_by], limit, at_least)
    return _ranked(tx, spans, filters, by, limit, at_least)


def _ranked(tx: Tx, spans: list[Span], filters: Filters, by: Measure, limit: int | None,
            at_least: int) -> list[tuple[str, int]]:
    if _cacheable(tx, spans, filters, by):
        return _ranked_from_cache(tx, spans, filters, by, limit, at_least)
    if _in_python(tx, by):
        folded = _fold_in_python(tx, [spans], filters, by, lambda _tag, _bucket, key: key)
        ranked = sorted(((str(key), value) for key, value in folded.items() if value >= at_least),
                        key=lambda item: (-item[1], item[0]))
        return ranked[:limit]
    rows = plan_rows(tx, [spans], filters, [by])
    if rows is None:
        return []
    total = merged_one(tx, rows.c, by, read=True)
    query = (
        select(rows.c.key, total.label("total"))
        .group_by(rows.c.key)
        .having(total >= at_least)
        .order_by(total.desc(), tx.dialect.code_point_order(rows.c.key))
    )
    if limit is not None:
        query = query.limit(limit)
    return [(row.key, by.python_value(row.total)) for row in tx.execute(query)]


def _cacheable(tx: Tx, spans: list[Span], filters: Filters, by: Measure) -> bool:
    """Totals of an additive whole-number measure over every key, with some spans worth keeping."""
    return (tx.totals is not None and filters.keys is None and by.merge is Fold.SUM and by.kind == "integer"
            and (tx.dialect.ordered_inserts or any(_keepable(tx, span) for span in spans)))


def _keepable(tx: Tx, span: Span) -> bool:
    """Whether a span's totals are kept under a stamp of versions: rollup spans, which only a
    recompute or a retention delete changes; and elsewhere than SQLite, raw minutes that are closed,
    which change only with a new marker version.

    On SQLite every raw span is carried forward by seq instead (:func:`_raw_totals`). Recent late
    events mark closed minutes with every ingest, so a stamp of marker versions would void the whole
    plan's totals many times a second under steady ingest."""
    return span.source != RAW or (span.settled and not tx.dialect.ordered_inserts)


def _ranked_from_cache(tx: Tx, spans: list[Span], filters: Filters, by: Measure, limit: int | None,
                       at_least: int) -> list[tuple[str, int]]:
    """:func:`_ranked`, with the totals of the keepable spans kept between reads
    (storage/totals_cache.py), and only the other raw spans read each time."""
    assert tx.totals is not None
    fresh = [span for span in spans if not _keepable(tx, span)]
    key = (filters.event, filters.segment, by.column, tuple(spans))
    return tx.totals.ranking(key, _kept_totals(tx, spans, filters, by), _raw_totals(tx, fresh, filters, by),
                             limit, at_least)


def _kept_totals(tx: Tx, spans: list[Span], filters: Filters, by: Measure) -> Totals:
    """Every key's total over the keepable spans among ``spans``: kept, or computed and kept.

    Stamped with the data version of each level read, and for dirty raw minutes with their markers'
    versions and the finest level's data version: a marker that is released (by a recompute, which
    bumps that version) and made again restarts at version 1."""
    kept = [span for span in spans if _keepable(tx, span)]
    return _kept(tx, kept, filters, by) if kept else Totals.of({})


def _kept(tx: Tx, kept: list[Span], filters: Filters, by: Measure, *, span_by_span: bool = False) -> Totals:
    assert tx.totals is not None
    at = _stamp(tx, kept)
    key = (filters.event, filters.segment, by.column, tuple(kept))
    found = tx.totals.get(key, at)
    if found is None:
        found = Totals.of(_sum_of_parts(tx, kept, filters, by, span_by_span))
        tx.totals.put(key, at, found)
    return found


def _sum_of_parts(tx: Tx, kept: list[Span], filters: Filters, by: Measure, span_by_span: bool = False
                  ) -> dict[str, int]:
    """The totals of ``kept``: of each source level's spans, kept apart, then added up; and the
    finer levels' (the window's edges) one bucket at a time.

    When a window moves by a minute, its plan changes at the edges, while its coarsest spans (a 24h
    window's 23 full hours) stay as they were for up to an hour: only the edges are read again, and
    of them only the buckets that are new, a minute or five at a time. Distinct users do not add up
    across spans, so they are read in one go, and neither do floats exactly, so real sums are too."""
    if by.merge is not Fold.SUM or by.kind != "integer":
        return _totals(tx, kept, replace(filters, keys=None), by)
    parts: dict[str, list[Span]] = defaultdict(list)
    for span in kept:
        parts[span.source].append(span)
    if len(parts) > 1:
        # Raw minutes in one go: hundreds may be dirty at once, and each bucket is one more query.
        coarsest = max(parts, key=lambda source: _width(tx, source))
        totals = [_kept(tx, part, filters, by, span_by_span=source not in (coarsest, RAW))
                  for source, part in parts.items()]
    elif span_by_span and len(units := _buckets_of(tx, kept)) > 1:
        totals = [_kept(tx, [unit], filters, by) for unit in units]
    else:
        return _totals(tx, kept, replace(filters, keys=None), by)
    # The largest part is copied whole; only the others are added key by key.
    *others, largest = sorted((part.by_key for part in totals), key=len)
    total = dict(largest)
    for other in others:
        for key, value in other.items():
            total[key] = total.get(key, 0) + value
    return total


def _buckets_of(tx: Tx, spans: list[Span]) -> list[Span]:
    """``spans`` cut into their level's buckets: a plan merges neighbouring buckets into one span, so
    the same minute comes in spans of other lengths as a window moves, and only a bucket stays the
    same from read to read."""
    return [replace(span, start=start, end=start + _width(tx, span.source))
            for span in spans for start in range(span.start, span.end, _width(tx, span.source))]


def _width(tx: Tx, source: str) -> int:
    """A bucket of ``source``: raw events are read by the minute."""
    return MINUTE_MS if source == RAW else tx.levels.by_name[source].width


def _stamp(tx: Tx, kept: list[Span]) -> Hashable:
    """What the rows of the keepable spans ``kept`` are as of this snapshot: the data version of each
    level and day read, and for dirty raw minutes their markers' versions and the finest level's data
    version of their days (a released marker comes back at version 1; its release bumped that)."""
    memo_key = ("stamp", tuple(kept))
    if memo_key not in tx.memo:
        finest = tx.levels.finest.name
        names = sorted({name for span in kept
                        for name in partitions(finest if span.source == RAW else span.source, span.start, span.end)})
        settled = [(span.start, span.end) for span in kept if span.source == RAW]
        tx.memo[memo_key] = (tuple(current_versions(tx, names).items()), marker_versions(tx, finest, settled))
    stamp: Hashable = tx.memo[memo_key]
    return stamp


def _newest_seq(tx: Tx) -> int:
    """The newest seq in this snapshot, read once per transaction."""
    if "upto" not in tx.memo:
        tx.memo["upto"] = int(tx.execute(select(func.max(fact_events.c.seq))).scalar() or 0)
    upto: int = tx.memo["upto"]
    return upto


def _raw_totals(tx: Tx, spans: list[Span], filters: Filters, by: Measure) -> Mapping[str, int]:
    """Every key's total over the raw spans ``spans`` that are not kept under a stamp. Where the
    backend orders inserts (SQLite), the totals of the previous read are kept with the highest seq
    they include, and only the events stored since are read: at 1,000 events/s an open minute holds
    up to 60,000."""
    if not spans:
        return {}
    if tx.totals is None or not tx.dialect.ordered_inserts or by.from_raw is not Fold.COUNT:
        return _totals(tx, spans, filters, by)
    if filters.keys is not None:  # every key's totals are carried forward; a keyed read picks its own
        every = _raw_totals(tx, spans, replace(filters, keys=None), by)
        return {key: every[key] for key in filters.keys if key in every}
    raw_version = current_versions(tx, [RAW])[RAW]
    upto = _newest_seq(tx)
    key = (filters.event, filters.segment, by.column, tuple(spans))
    kept = tx.totals.get_raw(key)
    if kept is not None and kept.raw_version == raw_version and kept.upto == upto:
        return kept.by_key
    if kept is not None and kept.raw_version == raw_version and kept.upto < upto:
        totals = dict(kept.by_key)
        for name, value in _stored_since(tx, spans, filters, by, kept.upto, upto).items():
            totals[name] = totals.get(name, 0) + value
    else:
        totals = _totals(tx, spans, filters, by)
    tx.totals.put_raw(key, RawTotals(raw_version, upto, totals))
    return totals


def _stored_since(tx: Tx, spans: list[Span], filters: Filters, by: Measure, after: int, upto: int
                  ) -> dict[str, int]:
    """The events with ``after < seq <= upto`` in ``spans``, by key."""
    counted = "count(*)" if by.raw_input is None else f"count({by.raw_input})"
    rows = _since(tx, spans, filters, f"key, {counted} AS total", "GROUP BY key", after, upto)
    return {row.key: int(row.total) for row in rows}


def _since(tx: Tx, spans: list[Span], filters: Filters, columns: str, rest: str, after: int, upto: int
           ) -> Sequence[Any]:
    """``SELECT columns`` of the events with ``after < seq <= upto`` in ``spans`` that ``filters``
    match. The unary ``+`` keeps SQLite off the minute index, so it walks the rowid range of the new
    events only."""
    ranges = " OR ".join(f"(+minute >= :start{i} AND +minute < :end{i})" for i in range(len(spans)))
    segment = " AND segment = :segment" if filters.segment is not None else ""
    keys = " AND key IN (SELECT value FROM json_each(:keys))" if filters.keys is not None else ""
    statement = text(f"SELECT {columns} FROM fact_events WHERE seq > :after AND seq <= :upto "
                     f"AND ({ranges}) AND event = :event{segment}{keys} {rest}")
    parameters: dict[str, Any] = {"after": after, "upto": upto, "event": filters.event, "segment": filters.segment,
                                  "keys": json.dumps(list(filters.keys or ()))}
    for i, span in enumerate(spans):
        parameters[f"start{i}"], parameters[f"end{i}"] = span.start, span.end
    return tx.execute(statement, parameters).all()


def _totals(tx: Tx, spans: list[Span], filters: Filters, by: Measure) -> dict[str, int]:
    rows = plan_rows(tx, [spans], filters, [by])
    if rows is None:
        return {}
    total = merged_one(tx, rows.c, by, read=True)
    query = select(rows.c.key, total.label("total")).group_by(rows.c.key)
    return {row.key: by.python_value(row.total) for row in tx.execute(query)}


# Past this many candidates, computing ``by`` for every key costs less than the key lists.
_MOST_CANDIDATES = 4_096


def _reachable(bound: int) -> int:
    """The highest estimate a key with this bound can show: a sketch may overshoot the exact count by
    its error, allowed here up to the accuracy trend promises (max(2, 5%))."""
    return bound + max(2, math.ceil(bound * 0.05))


def _ranked_within_bound(tx: Tx, spans: list[Span], filters: Filters, by: Measure, bound: Measure, limit: int,
                         at_least: int) -> list[tuple[str, int]]:
    """The same ranking as :func:`_ranked`, computing ``by`` only for the keys whose bound could still
    place them: candidates come in descending order of the cheap bound (count), ``by`` is computed for
    them a batch at a time (``limit`` keys, then twice as many each time), and once the ``limit``-th
    value beats what the next candidate could reach, no key further down can rank. Merging a sketch
    per key is what ranking by users costs, and a long tail of keys never needs it."""
    values: dict[str, int] = {}
    fetch = max(4 * limit, 64)
    while fetch <= _MOST_CANDIDATES:
        candidates = _ranked(tx, spans, filters, bound, fetch, at_least)
        pending = [(key, most) for key, most in candidates if key not in values]
        batch = limit
        while True:
            part, pending = pending[:batch], pending[batch:]
            if part:
                found = measures_by_key(tx, spans, replace(filters, keys=[key for key, _ in part]), [by])
                values.update({key: found.get(key, {}).get(by.column) or 0 for key, _ in part})
            ranked = sorted(((key, value) for key, value in values.items() if value >= at_least),
                            key=lambda item: (-item[1], item[0]))
            if not pending and len(candidates) < fetch:  # every key with enough of the bound is in
                return ranked[:limit]
            next_bound = pending[0][1] if pending else candidates[-1][1]
            if len(ranked) >= limit and ranked[limit - 1][1] > _reachable(next_bound):
                return ranked[:limit]
            if not pending:
                break
            batch *= 2
        fetch *= 4
    return _ranked(tx, spans, filters, by, limit, at_least)


def measures_by_key(tx: Tx, spans: list[Span], filters: Filters, measures: Sequence[Measure]
                    ) -> dict[str, dict[str, Any]]:
    """For the keys of ``filters``: each measure's read value over ``spans``, by column."""
    kept = [m for m in measures if _keepable_by_key(tx, spans, filters, m)]
    in_sql = [m for m in measures if not _in_python(tx, m) and m not in kept]
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    rows = plan_rows(tx, [spans], filters, in_sql) if in_sql else None
    if rows is not None:
        query = select(rows.c.key, *merged(tx, rows.c, in_sql, read=True)).group_by(rows.c.key)
        for row in tx.execute(query):
            found[row.key] = {m.column: m.python_value(row._mapping[m.column]) for m in in_sql}
    for measure in measures:
        if measure in kept:
            folded = _values_from_kept(tx, spans, filters, measure)
        elif _in_python(tx, measure):
            folded = _fold_in_python(tx, [spans], filters, measure, lambda _tag, _bucket, key: key)
        else:
            continue
        for key in set(found) | {str(key) for key, value in folded.items() if value}:
            found[key][measure.column] = folded.get(key, 0)
    return dict(found)


# -- the figures of the keys a read shows, kept between reads --

def _keepable_by_key(tx: Tx, spans: list[Span], filters: Filters, measure: Measure) -> bool:
    """A sketch or a whole-number sum of a few named keys (the ones a ranking shows), with spans
    worth keeping."""
    return (tx.totals is not None and filters.keys is not None and any(_keepable(tx, span) for span in spans)
            and (measure.is_sketch or (measure.merge is Fold.SUM and measure.kind == "integer")))


def _values_from_kept(tx: Tx, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, int]:
    """``measure`` of each key of ``filters`` over ``spans``: each key's value over the keepable spans
    is kept (stamped as the kept totals are), and added to (a sum) or merged with (a sketch) its value
    over the other raw spans. Without this, the users figure of the 10 keys a ``top`` shows re-reads all
    their rows, and all their raw events in dirty minutes, on every request."""
    assert tx.totals is not None
    assert filters.keys is not None
    keys = list(dict.fromkeys(filters.keys))
    kept = [span for span in spans if _keepable(tx, span)]
    fresh = [span for span in spans if not _keepable(tx, span)]
    stamp = _stamp(tx, kept)
    entry = (filters.event, filters.segment, measure.column, tuple(kept))
    known = tx.totals.get_by_key(entry, stamp)
    missing = [key for key in keys if key not in known]
    if missing:
        computed = _stored_values(tx, kept, replace(filters, keys=missing), measure)
        # A long run of different keys starts the entry afresh rather than growing it without end.
        base = known if len(known) < _MOST_CANDIDATES else {}
        known = {**base, **{key: computed.get(key) for key in missing}}
        tx.totals.put_by_key(entry, stamp, known)
    keyed = replace(filters, keys=keys)
    if not measure.is_sketch:
        opened = _raw_totals(tx, fresh, keyed, measure)
        return {key: (known.get(key) or 0) + opened.get(key, 0) for key in keys}
    sketched = _raw_sketches(tx, fresh, keyed, measure)
    parts = {key: tuple(sketch for sketch in (known.get(key), sketched.get(key)) if sketch is not None)
             for key in keys}
    return tx.totals.estimates(parts, lambda missing: tx.dialect.estimates(tx.conn, missing))


def _stored_values(tx: Tx, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Any]:
    """Each key's value of ``measure`` over ``spans`` as storage merges it: a sketch not estimated,
    in the form the backend stores it."""
    if not measure.is_sketch:
        return _totals(tx, spans, filters, measure) if spans else {}
    return _sketches(tx, spans, filters, measure)


def _sketches(tx: Tx, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Sketch]:
    """Each key's sketch over ``spans``, not estimated: as the backend stores it."""
    if not spans:
        return {}
    if _in_python(tx, measure):
        folded = _folded_sketches(tx, [spans], filters, measure, lambda _tag, _bucket, key: key)
        return {str(key): sketch.blob() for key, sketch in folded.items()}
    rows = plan_rows(tx, [spans], filters, [measure])
    if rows is None:
        return {}
    query = select(rows.c.key, merged_one(tx, rows.c, measure).label("sketch")).group_by(rows.c.key)
    return {row.key: row.sketch for row in tx.execute(query)}


def _raw_sketches(tx: Tx, spans: list[Span], filters: Filters, measure: Measure) -> dict[str, Sketch]:
    """Each key's sketch over the raw spans ``spans`` not kept under a stamp. Where the backend
    orders inserts (SQLite), as :func:`_raw_totals`: kept with the seq it covers, and only the users
    of the events stored since are added; the 10 most popular keys hold a large share of an open
    minute's events."""
    if not spans:
        return {}
    if not tx.dialect.ordered_inserts or measure.raw_input is None:
        return _sketches(tx, spans, filters, measure)
    assert tx.totals is not None
    assert filters.keys is not None
    upto, raw_version = _newest_seq(tx), current_versions(tx, [RAW])[RAW]
    entry = (filters.event, filters.segment, measure.column, tuple(spans))
    kept = tx.totals.get_raw_sketches(entry)
    by_key = dict(kept.by_key) if kept is not None and kept.raw_version == raw_version else {}
    # A key kept by a reader with a newer snapshot than this one's is read again, as a new one is.
    fresh = [key for key in filters.keys if key not in by_key or by_key[key][0] > upto]
    if fresh:
        computed = _sketches(tx, spans, replace(filters, keys=fresh), measure)
        by_key.update({key: (upto, computed.get(key)) for key in fresh})
    behind: dict[int, list[str]] = defaultdict(list)
    for key in filters.keys:
        if by_key[key][0] < upto:
            behind[by_key[key][0]].append(key)
    for after, keys in behind.items():
        added: dict[str, Distinct] = {}
        for row in _since(tx, spans, replace(filters, keys=keys), f"key, {measure.raw_input} AS item",
                          f"AND {measure.raw_input} IS NOT NULL", after, upto):
            if row.key not in added:
                added[row.key] = Distinct()
                added[row.key].merge(by_key[row.key][1])
            added[row.key].add(row.item)
        by_key.update({key: (upto, added[key].blob() if key in added else by_key[key][1]) for key in keys})
    if len(by_key) > _MOST_CANDIDATES:
        by_key = {key: by_key[key] for key in filters.keys}
    tx.totals.put_raw_sketches(entry, RawSketches(raw_version, by_key))
    return {key: by_key[key][1] for key in filters.keys}


def tagged_totals(tx: Tx, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
    """Per plan, the value of ``by`` of every key with events in it (keys without may be left out)."""
    if any(_cacheable(tx, spans, replace(filters, keys=None), by) for spans in plans):
        return _tagged_from_cache(tx, plans, filters, by)
    found: list[dict[str, int]] = [{} for _ in plans]
    if _in_python(tx, by):
        folded = _fold_in_python(tx, plans, filters, by, lambda tag, _bucket, key: (tag, key))
        for (tag, key), value in folded.items():
            found[tag][key] = value
        return found
    rows = plan_rows(tx, plans, filters, [by], tagged=True)
    if rows is None:
        return found
    total = merged_one(tx, rows.c, by, read=True)
    query = select(rows.c.tag, rows.c.key, total.label("total")).group_by(rows.c.tag, rows.c.key)
    for row in tx.execute(query):
        found[int(row.tag)][row.key] = by.python_value(row.total)
    return found


def _tagged_from_cache(tx: Tx, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
    """:func:`tagged_totals` from each plan's kept totals (rising's baseline windows change only when
    their rows do), plus the raw spans of the keys asked for."""
    wanted = None if filters.keys is None else set(filters.keys)
    found: list[dict[str, int]] = []
    for spans in plans:
        kept = _kept_totals(tx, spans, filters, by).by_key
        raw = [span for span in spans if not _keepable(tx, span)]
        fresh = _raw_totals(tx, raw, replace(filters, keys=None), by)
        if wanted is None:
            found.append({key: kept.get(key, 0) + fresh.get(key, 0) for key in kept.keys() | fresh.keys()})
        elif fresh:
            found.append({key: total for key in wanted if (total := kept.get(key, 0) + fresh.get(key, 0))})
        else:
            # ~200 candidates in each of 12–48 baseline windows against thousands of kept keys: walk the
            # candidates (``kept.keys() & wanted`` walked the kept keys, and took a quarter of the read).
            found.append({key: total for key in wanted if (total := kept.get(key, 0))})
    return found


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
        return cls(bucket, {m.column: m.empty for m in MEASURES})


def points(tx: Tx, spans: list[Span], filters: Filters, width: int) -> list[Point]:
    """Measures per ``width``-wide bucket; buckets without events are absent (the caller zero-fills)."""
    in_sql = [m for m in MEASURES if not _in_python(tx, m)]
    rows = plan_rows(tx, [spans], filters, in_sql)
    if rows is None:
        return []
    bucket = (rows.c.bucket - rows.c.bucket % width).label("point_bucket")
    query = select(bucket, *merged(tx, rows.c, in_sql, read=True)).group_by(bucket).order_by(bucket)
    found = [Point(int(r.point_bucket), {m.column: m.python_value(r._mapping[m.column]) for m in in_sql})
             for r in tx.execute(query)]
    for measure in MEASURES:
        if _in_python(tx, measure):
            folded = _fold_in_python(tx, [spans], filters, measure, lambda _tag, at, _key: at - at % width)
            for point in found:
                point.measures[measure.column] = folded.get(point.bucket, measure.empty)
    return found


# -- sketches folded in Python, on a PostgreSQL without postgresql-hll (TREND_HLL) --

def _in_python(tx: Tx, measure: Measure) -> bool:
    return measure.is_sketch and not tx.dialect.sketches_in_sql


def _fold_in_python(tx: Tx, plans: Sequence[list[Span]], filters: Filters, measure: Measure,
                    group: Callable[[int, int, str], Hashable]) -> dict[Any, int]:
    """A sketch measure's estimate over each plan's spans, per ``group(plan index, bucket, key)``."""
    folded = _folded_sketches(tx, plans, filters, measure, group)
    return {where: sketch.estimate() for where, sketch in folded.items()}


def _folded_sketches(tx: Tx, plans: Sequence[list[Span]], filters: Filters, measure: Measure,
                     group: Callable[[int, int, str], Hashable]) -> dict[Any, Distinct]:
    """A sketch measure over each plan's spans, per ``group(plan index, bucket, key)``: raw spans add
    their user_ids, rollup spans merge their stored sketches."""
    folded: dict[Hashable, Distinct] = defaultdict(Distinct)
    for index, spans in enumerate(plans):
        for source, source_spans in _by_source(spans):
            raw = source == RAW
            table = fact_events if raw else level_table(tx.levels.by_name[source])
            bucket = table.c.minute if raw else table.c.bucket
            value = table.c[(measure.raw_input or "") if raw else measure.column]
            query = select(bucket.label("at"), table.c.key, value.label("item")).where(
                _ranges(bucket, source_spans), *_filtered(tx, table.c, filters), value.isnot(None))
            for row in tx.execute(query):
                sketch = folded[group(index, int(row.at), row.key)]
                sketch.add(row.item) if raw else sketch.merge(row.item)
    return dict(folded)
