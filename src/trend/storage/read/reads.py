"""Exact reads over a read plan's spans: the entry points the queries use.

Each transaction composes its :class:`~trend.storage.read.sources.TotalsSource` once, from what the
backend can do: SQL at the bottom, users sketches folded in Python where the database has no
postgresql-hll, raw spans carried forward by seq where inserts are ordered (SQLite), and kept
totals where the backend keeps them between reads. The entry points below only ask it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from trend import measures as all_measures
from trend.measures import Measure
from trend.model import Span
from trend.ranking import Ranked, ranked
from trend.storage.read.carried import RawCarried
from trend.storage.read.kept import KeptByStamp
from trend.storage.read.python_sketches import PythonSketches
from trend.storage.read.read_sql import Filters
from trend.storage.read.sources import Point, SqlSource, TotalsSource
from trend.storage.shared.tx import Tx

__all__ = ["Filters", "Point", "key_totals", "measures_by_key", "points", "ranked_keys", "source", "tagged_totals"]

# Past this many candidates, computing ``by`` for every key costs less than the key lists.
_MOST_CANDIDATES = 4_096


def source(tx: Tx) -> TotalsSource:
    """The transaction's source, composed on first use from its backend's capabilities."""
    if tx.memo.source is None:
        caps = tx.dialect.caps
        found: TotalsSource = SqlSource(tx)
        if not caps.sketches_in_sql:
            found = PythonSketches(tx, found)
        if tx.cache is not None:
            if caps.ordered_inserts:
                found = RawCarried(tx, found, tx.cache)
            found = KeptByStamp(tx, found, tx.cache)
        tx.memo.source = found
    return cast(TotalsSource, tx.memo.source)


def ranked_keys(tx: Tx, spans: list[Span], filters: Filters, by: Measure, *,
                limit: int | None = None, at_least: float = 1) -> Ranked:
    """Keys by the measure ``by`` (count or users), highest first, those with at least ``at_least``;
    ties go to the key that sorts first (by code point)."""
    if limit is not None and by.bounded_by is not None:
        return _ranked_within_bound(source(tx), spans, filters, by, all_measures.by_column(by.bounded_by), limit,
                                    at_least)
    return source(tx).ranked(spans, filters, by, limit, at_least)


def key_totals(tx: Tx, spans: list[Span], filters: Filters, by: Measure) -> dict[str, int]:
    """Every key's total of the additive measure ``by`` over ``spans``, read from the tables."""
    return dict(source(tx).totals(spans, filters, by))


def measures_by_key(tx: Tx, spans: list[Span], filters: Filters, measures: Sequence[Measure]
                    ) -> dict[str, dict[str, Any]]:
    """For the keys of ``filters``: each measure's read value over ``spans``, by column."""
    return source(tx).values(spans, filters, measures)


def tagged_totals(tx: Tx, plans: Sequence[list[Span]], filters: Filters, by: Measure) -> list[dict[str, int]]:
    """Per plan, the value of ``by`` of every key with events in it (keys without may be left out)."""
    return source(tx).tagged(plans, filters, by)


def points(tx: Tx, spans: list[Span], filters: Filters, width: int) -> list[Point]:
    """Measures per ``width``-wide bucket; buckets without events are absent (the caller zero-fills)."""
    return source(tx).points(spans, filters, width)


def _reachable(bound: int) -> int:
    """The highest estimate a key with this bound can show: a sketch may overshoot the exact count by
    its error, allowed here up to the accuracy trend promises (max(2, 5%))."""
    return bound + max(2, math.ceil(bound * 0.05))


def _ranked_within_bound(found: TotalsSource, spans: list[Span], filters: Filters, by: Measure, bound: Measure,
                         limit: int, at_least: float) -> Ranked:
    """The ranking by ``by``, computing it only for the keys whose bound could still place them:
    candidates come in descending order of the cheap bound (count), ``by`` is computed for them a batch
    at a time (``limit`` keys, then twice as many each time), and once the ``limit``-th value beats
    what the next candidate could reach, no key further down can rank. Merging a sketch per key is
    what ranking by users costs, and a long tail of keys never needs it."""
    values: dict[str, int] = {}
    fetch = max(4 * limit, 64)
    while fetch <= _MOST_CANDIDATES:
        candidates = found.ranked(spans, filters, bound, fetch, at_least)
        pending = [(key, most) for key, most in candidates if key not in values]
        batch = limit
        while True:
            part, pending = pending[:batch], pending[batch:]
            if part:
                figures = found.values(spans, filters.of([key for key, _ in part]), [by])
                values.update({key: figures.get(key, {}).get(by.column) or 0 for key, _ in part})
            so_far = ranked(values.items(), at_least)
            if not pending and len(candidates) < fetch:  # every key with enough of the bound is in
                return so_far[:limit]
            next_bound = pending[0][1] if pending else candidates[-1][1]
            if len(so_far) >= limit and so_far[limit - 1][1] > _reachable(next_bound):
                return so_far[:limit]
            if not pending:
                break
            batch *= 2
        fetch *= 4
    return found.ranked(spans, filters, by, limit, at_least)
