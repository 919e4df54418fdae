"""Key totals of clean, closed buckets, kept in the process between reads.

A ``top`` over 24 hours sums tens of thousands of keys over rollup rows that rarely change: only a
recompute or retention rewrites them, and both bump their level's data version in the same
transaction (``trend_data_versions``). A read looks at the versions in its own snapshot: when the
versions of every level it would read from the cache are the ones the totals were computed at, no
row they summed has changed, so the totals are still exact. Only the raw spans (open and dirty
minutes) are then read from the database, and on SQLite only their events stored since the last
read (:class:`RawTotals`).

Marker state alone would not be a sound key: a marker is deleted when its bucket is recomputed and
comes back at version 1, so a bucket can be dirty, recomputed with new rows and clean again between
two reads that both see it clean. The data version only grows, and a row lock orders its bumps as
their transactions commit (a sequence would not).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import select

from trend.model import DAY_MS
from trend.storage.schema import data_versions

if TYPE_CHECKING:
    from trend.storage.engine import Tx

V = TypeVar("V")


# Data versions are kept per level and day: a catch-up of yesterday's buckets leaves the totals that
# today's reads keep alone.
PARTITION_MS = DAY_MS


def partitions(level: str, start: int, end: int) -> list[str]:
    """The names of the data versions of ``level``'s buckets in ``[start, end)``: one per day."""
    return [f"{level}@{day}" for day in range(start // PARTITION_MS, (end - 1) // PARTITION_MS + 1)]


def bump_version(tx: Tx, level: str, start: int | None = None, end: int | None = None) -> None:
    """Inside a transaction that rewrites or deletes ``level``'s rows in ``[start, end)`` (``raw``:
    any raw event; its version is one for all). Taken last, so the row lock is held only while the
    transaction commits. The level's own version moves too: processes of schema 5, which read only
    that one, may still serve reads during a rolling upgrade."""
    if not tx.dialect.caches_reads:
        return
    names = [level] if start is None or end is None else [level, *partitions(level, start, end)]
    for name in sorted(names):  # one order for every writer, so PostgreSQL cannot deadlock
        upsert = tx.dialect.insert(data_versions).values(level=name, version=1)
        tx.execute(upsert.on_conflict_do_update(index_elements=["level"],
                                                set_={"version": data_versions.c.version + 1}))


def current_versions(tx: Tx, names: Iterable[str]) -> dict[str, int]:
    """The data versions of ``names`` in this transaction's snapshot (0 for one never bumped), each
    read once per transaction: a rising read asks for the same ones once per baseline window."""
    memo: dict[str, int] = tx.memo.setdefault("versions", {})
    missing = [name for name in dict.fromkeys(names) if name not in memo]
    if missing:
        query = select(data_versions).where(tx.dialect.one_of(data_versions.c.level, missing))
        found = {row.level: int(row.version) for row in tx.execute(query)}
        memo.update({name: found.get(name, 0) for name in missing})
    return {name: memo[name] for name in names}


def _ranking_order(item: tuple[str, int]) -> tuple[int, str]:
    """Highest total first, ties by key."""
    return -item[1], item[0]


@dataclass(frozen=True)
class Totals:
    """Every key's total over some spans, and the same keys from the highest total down (ties by key)."""

    by_key: Mapping[str, int]

    @cached_property
    def ranked(self) -> list[tuple[str, int]]:
        # Sorted when first ranked: the totals of a window's part are only added up, never ranked.
        return sorted(self.by_key.items(), key=_ranking_order)

    def leading(self, count: int | None) -> list[tuple[str, int]]:
        """The first ``count`` of :attr:`ranked` (all of them for None). A cold read of a 24h window
        shows 10 of some 20,000 keys, and sorting them all by a Python key took a third of its time:
        only the keys at or above the ``count``-th highest total are sorted. The lead is kept, since
        the same totals are ranked again with each read's fresh raw totals."""
        if count is None or "ranked" in self.__dict__ or 4 * count >= len(self.by_key):
            return self.ranked if count is None else self.ranked[:count]
        lead: list[tuple[str, int]] = self.__dict__.get("_lead", [])
        if len(lead) < count:
            floor = sorted(self.by_key.values(), reverse=True)[count - 1]
            # Every key at or above the floor: exactly the start of the ranking, ties included.
            lead = sorted(((key, total) for key, total in self.by_key.items() if total >= floor), key=_ranking_order)
            self.__dict__["_lead"] = lead
        return lead[:count]

    @classmethod
    def of(cls, by_key: dict[str, int]) -> Totals:
        return cls(by_key)


@dataclass(frozen=True)
class RawTotals:
    """Key totals over the raw spans of a plan, of the events with a seq up to ``upto``, while no
    raw event was deleted (``raw_version``): the next read adds only the events after ``upto``."""

    raw_version: int
    upto: int
    by_key: Mapping[str, int]


# A users sketch as the backend stores it: DataSketches' bytes, or postgresql-hll's text form; None
# where a key has no users in the spans.
Sketch = Any


@dataclass(frozen=True)
class RawSketches:
    """Per key: the sketch over the raw spans of a plan, of the events with a seq up to the
    number beside it, while no raw event was deleted (``raw_version``)."""

    raw_version: int
    by_key: Mapping[str, tuple[int, Sketch]]


def _size(values: Mapping[str, Any]) -> int:
    """Roughly the bytes ``values`` hold: sketches dominate."""
    return sum(64 + (len(value) if isinstance(value, bytes | str) else 0) for value in values.values())


class _Lru(Generic[V]):
    """Least recently used entries, as long as their weights add up to at most ``most``; not locked."""

    def __init__(self, most: int, weight: Callable[[V], int] = lambda _value: 1) -> None:
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._most, self._weight, self._total = most, weight, 0

    def get(self, key: Hashable) -> V | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: Hashable, value: V) -> None:
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._total -= self._weight(previous)
        self._entries[key] = value
        self._total += self._weight(value)
        while self._total > self._most and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self._total -= self._weight(dropped)


class TotalsCache:
    """An LRU of :class:`Totals`, each stored with the data versions it was computed at, bounded by
    the keys it holds in all (a 24h window of a long tail holds tens of thousands, a 15m one few).

    Beside them, the figures of the keys reads have shown (a few per window: counts, and users
    sketches), stamped the same way and bounded by their size: a sketch of many users is 16 kB."""

    def __init__(self, max_keys: int = 200_000, max_bytes: int = 64 << 20) -> None:
        self._totals: _Lru[tuple[Hashable, Totals]] = _Lru(max_keys, lambda entry: len(entry[1].by_key))
        self._by_key: _Lru[tuple[Hashable, Mapping[str, Any]]] = _Lru(max_bytes, lambda entry: _size(entry[1]))
        self._raw: _Lru[RawTotals] = _Lru(64)
        self._raw_sketches: _Lru[RawSketches] = _Lru(64)
        self._rankings: _Lru[tuple[Totals, Mapping[str, int], Hashable, list[tuple[str, int]]]] = _Lru(64)
        self._estimates: _Lru[int] = _Lru(4_096)
        self._lock = threading.Lock()

    def get(self, key: Hashable, versions: Hashable) -> Totals | None:
        with self._lock:
            entry = self._totals.get(key)
        return entry[1] if entry is not None and entry[0] == versions else None

    def put(self, key: Hashable, versions: Hashable, totals: Totals) -> None:
        with self._lock:
            self._totals.put(key, (versions, totals))

    def get_by_key(self, key: Hashable, versions: Hashable) -> Mapping[str, Any]:
        """The values (sums, or sketches) kept for ``key`` at these versions, by key shown; empty when none are."""
        with self._lock:
            entry = self._by_key.get(key)
        return entry[1] if entry is not None and entry[0] == versions else {}

    def put_by_key(self, key: Hashable, versions: Hashable, values: Mapping[str, Any]) -> None:
        """Replace the entry: callers pass what they read merged with what they computed."""
        with self._lock:
            self._by_key.put(key, (versions, values))

    def get_raw(self, key: Hashable) -> RawTotals | None:
        with self._lock:
            return self._raw.get(key)

    def put_raw(self, key: Hashable, totals: RawTotals) -> None:
        with self._lock:
            self._raw.put(key, totals)

    def get_raw_sketches(self, key: Hashable) -> RawSketches | None:
        with self._lock:
            return self._raw_sketches.get(key)

    def put_raw_sketches(self, key: Hashable, sketches: RawSketches) -> None:
        with self._lock:
            self._raw_sketches.put(key, sketches)

    def ranking(self, key: Hashable, base: Totals, extra: Mapping[str, int], limit: int | None,
                at_least: int) -> list[tuple[str, int]]:
        """:func:`ranked_with`, kept while both inputs are the very objects kept above: a read with
        hundreds of dirty minutes pending adds ~10,000 keys of raw totals to the kept ones, which
        costs more than the rest of the read, and both stay the same until something is stored."""
        with self._lock:
            found = self._rankings.get(key)
        if found is not None and found[0] is base and found[1] is extra and found[2] == (limit, at_least):
            return list(found[3])
        ranked = ranked_with(base, extra, limit, at_least)
        with self._lock:
            self._rankings.put(key, (base, extra, (limit, at_least), ranked))
        return list(ranked)

    def estimates(self, parts: Mapping[str, tuple[Sketch, ...]],
                  estimate: Callable[[Mapping[str, tuple[Sketch, ...]]], dict[str, int]]) -> dict[str, int]:
        """``estimate(parts)``, remembering each key's figure by the sketches merged for it: unions of
        16 kB sketches cost more than the rest of a warm read, and the same ones come back until
        something is stored. Bytes and strings keep their hash, so a lookup does not read them again."""
        with self._lock:
            known = {key: self._estimates.get(sketches) for key, sketches in parts.items()}
        missing = {key: parts[key] for key, value in known.items() if value is None}
        found = estimate(missing) if missing else {}
        with self._lock:
            for key, value in found.items():
                self._estimates.put(missing[key], value)
        return {key: found[key] if value is None else value for key, value in known.items()}


def ranked_with(base: Totals, extra: Mapping[str, int], limit: int | None, at_least: int) -> list[tuple[str, int]]:
    """The ranking of base + extra, exactly, without adding the two up key by key: the keys without
    extra keep base's order, so only the first ``limit`` of them can rank."""
    combined = [(key, base.by_key.get(key, 0) + value) for key, value in extra.items()]
    # Base's keys that extra replaces are passed over, so this many of base's lead hold ``limit`` others.
    replaced = sum(1 for key in extra if key in base.by_key)
    taken: list[tuple[str, int]] = []
    for key, total in base.leading(None if limit is None else limit + replaced):
        if (limit is not None and len(taken) >= limit) or total < at_least:
            break
        if key not in extra:
            taken.append((key, total))
    ranked = sorted([*taken, *((key, total) for key, total in combined if total >= at_least)], key=_ranking_order)
    return ranked if limit is None else ranked[:limit]
