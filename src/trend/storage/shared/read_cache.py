"""What reads keep between requests, in a process: each kind in one stamped LRU, whose entries carry
the stamp they are valid at, so no caller checks validity itself.

The stamps (storage/read/kept.py and storage/read/carried.py make them): the data versions of the rows behind
kept totals, the raw version and newest seq behind raw totals carried forward, and the very objects
a ranking was made from.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from trend.ranking import Ranked, Totals

V = TypeVar("V")

# A users sketch as the backend stores it: DataSketches' bytes, or postgresql-hll's text form; None
# where a key has no users in the spans.
Sketch = Any


class StampedLru(Generic[V]):
    """Least recently used entries, as long as their weights add up to at most ``most``. Each entry
    holds the stamp it was made at; :meth:`get` finds it only at that stamp."""

    def __init__(self, most: int, weight: Callable[[V], int] = lambda _value: 1) -> None:
        self._entries: OrderedDict[Hashable, tuple[Hashable, V]] = OrderedDict()
        self._most, self._weight, self._total = most, weight, 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, stamp: Hashable) -> V | None:
        found = self.latest(key)
        return found[1] if found is not None and found[0] == stamp else None

    def latest(self, key: Hashable) -> tuple[Hashable, V] | None:
        """The entry whatever its stamp: raw totals are carried forward from an older one."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Hashable, stamp: Hashable, value: V) -> None:
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._total -= self._weight(previous[1])
            self._entries[key] = (stamp, value)
            self._total += self._weight(value)
            while self._total > self._most and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._total -= self._weight(dropped)


class Same:
    """A stamp part that equals only the very same object: the inputs of a kept ranking."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def _size(values: Mapping[str, Any]) -> int:
    """Roughly the bytes ``values`` hold: sketches dominate."""
    return sum(64 + (len(value) if isinstance(value, bytes | str) else 0) for value in values.values())


class ReadCache:
    """Everything a process's reads keep, bounded: totals by the keys they hold in all (a 24h window of a
    long tail holds tens of thousands, a 15m one few), the figures of shown keys by their size (a
    sketch of many users is 16 kB), the rest by count."""

    def __init__(self, max_keys: int = 200_000, max_bytes: int = 64 << 20) -> None:
        # Every key's total over a plan's keepable spans, stamped with their data versions.
        self.totals: StampedLru[Totals] = StampedLru(max_keys, lambda totals: len(totals.by_key))
        # The figures (sums, or sketches as stored) of the keys reads have shown, stamped the same way.
        self.by_key: StampedLru[Mapping[str, Any]] = StampedLru(max_bytes, _size)
        # Raw spans' totals, stamped with the raw version; the value says up to which seq.
        self.raw: StampedLru[tuple[int, Mapping[str, int]]] = StampedLru(64)
        # Raw spans' sketches of shown keys, stamped with the raw version: per key, the seq it covers.
        self.raw_sketches: StampedLru[Mapping[str, tuple[int, Sketch]]] = StampedLru(64)
        # A ranking of kept totals plus raw totals, stamped with those very objects and the limits.
        self.rankings: StampedLru[Ranked] = StampedLru(64)
        # The estimate of a union of sketches, by the sketches: always valid.
        self.estimates: StampedLru[int] = StampedLru(4_096)

    def estimated(self, parts: Mapping[str, tuple[Sketch, ...]],
                  estimate: Callable[[Mapping[str, tuple[Sketch, ...]]], dict[str, int]]) -> dict[str, int]:
        """``estimate(parts)``, remembering each key's figure by the sketches merged for it: unions of
        16 kB sketches cost more than the rest of a warm read, and the same ones come back until
        something is stored. Bytes and strings keep their hash, so a lookup does not read them again."""
        known = {key: self.estimates.get(sketches, None) for key, sketches in parts.items()}
        missing = {key: parts[key] for key, value in known.items() if value is None}
        found = estimate(missing) if missing else {}
        for key, value in found.items():
            self.estimates.put(missing[key], None, value)
        return {key: found[key] if value is None else value for key, value in known.items()}
