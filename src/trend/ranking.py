"""Rankings of keys by a total, pure, no I/O: highest first, ties to the key that sorts first. How
much a key rises is trend/rising.py's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

Ranked = list[tuple[str, int]]


def ranking_order(item: tuple[str, int]) -> tuple[int, str]:
    """Highest total first, ties by key (code point order, as Python sorts strings)."""
    return -item[1], item[0]


def ranked(items: Iterable[tuple[str, int]], at_least: float = 1, limit: int | None = None) -> Ranked:
    """The items with at least ``at_least``, in ranking order, the first ``limit`` of them."""
    found = sorted(((key, value) for key, value in items if value >= at_least), key=ranking_order)
    return found if limit is None else found[:limit]


@dataclass(frozen=True)
class Totals:
    """Every key's total over some spans, and the same keys in ranking order, sorted when needed."""

    by_key: Mapping[str, int]

    @cached_property
    def ranked(self) -> Ranked:
        # Sorted when first ranked: the totals of a window's part are only added up, never ranked.
        return sorted(self.by_key.items(), key=ranking_order)

    def leading(self, count: int | None) -> Ranked:
        """The first ``count`` of :attr:`ranked` (all of them for None). A cold read of a 24h window
        shows 10 of some 20,000 keys, and sorting them all by a Python key took a third of its time:
        only the keys at or above the ``count``-th highest total are sorted. The lead is kept, since
        the same totals are ranked again with each read's fresh raw totals."""
        if count is None or "ranked" in self.__dict__ or 4 * count >= len(self.by_key):
            return self.ranked if count is None else self.ranked[:count]
        lead: Ranked = self.__dict__.get("_lead", [])
        if len(lead) < count:
            floor = sorted(self.by_key.values(), reverse=True)[count - 1]
            # Every key at or above the floor: exactly the start of the ranking, ties included.
            lead = sorted(((key, total) for key, total in self.by_key.items() if total >= floor), key=ranking_order)
            self.__dict__["_lead"] = lead
        return lead[:count]


def summed(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Key by key, the sum of ``parts``: the largest is copied whole, only the others are added."""
    *others, largest = sorted(parts, key=len) or [{}]
    total = dict(largest)
    for other in others:
        for key, value in other.items():
            total[key] = total.get(key, 0) + value
    return total


def ranked_with(base: Totals, extra: Mapping[str, int], limit: int | None, at_least: float) -> Ranked:
    """The ranking of base + extra, exactly, without adding the two up key by key: the keys without
    extra keep base's order, so only the first ``limit`` of them can rank."""
    combined = [(key, base.by_key.get(key, 0) + value) for key, value in extra.items()]
    # Base's keys that extra replaces are passed over, so this many of base's lead hold ``limit`` others.
    replaced = sum(1 for key in extra if key in base.by_key)
    taken: Ranked = []
    for key, total in base.leading(None if limit is None else limit + replaced):
        if (limit is not None and len(taken) >= limit) or total < at_least:
            break
        if key not in extra:
            taken.append((key, total))
    found = sorted([*taken, *((key, total) for key, total in combined if total >= at_least)], key=ranking_order)
    return found if limit is None else found[:limit]
