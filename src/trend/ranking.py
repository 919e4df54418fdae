"""Rankings of keys, pure, no I/O: by a total, highest first, ties to the key that sorts first; and
by how much a key rises against its baseline (formulas in docs/queries.md)."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from itertools import groupby

Ranked = list[tuple[str, int]]


def ranking_order(item: tuple[str, int]) -> tuple[int, str]:
    """Highest total first, ties by key (code point order, as Python sorts strings)."""
    return -item[1], item[0]


def ranked(items: Iterable[tuple[str, int]], at_least: int = 1, limit: int | None = None) -> Ranked:
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


def ranked_with(base: Totals, extra: Mapping[str, int], limit: int | None, at_least: int) -> Ranked:
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


def rising_score(count: int, baseline: Sequence[int]) -> tuple[float, float, float, float]:
    """(μ, σ, z, growth %): ``z = (c - μ) / max(σ, √μ, 1)``, ``growth = 100 ((c+1)/(μ+1) - 1)``.

    Computed from whole numbers and rounded once each, so scores that are equal are equal floats."""
    return _rising_terms(count, baseline)[0]


def score_order(count: int, baseline: Sequence[int]) -> Fraction:
    """A value that orders like z and is exact: sign(z)·z², so equal scores tie exactly."""
    _, numerator, denominator = _rising_terms(count, baseline)
    return Fraction(numerator, denominator)


def _rising_terms(count: int, baseline: Sequence[int]) -> tuple[tuple[float, float, float, float], int, int]:
    """:func:`rising_score`'s figures, and :func:`score_order` as a numerator and a denominator,
    from one pass over the baseline: a rising read scores a few hundred candidates."""
    n = len(baseline)
    if n == 0:
        return (0.0, 0.0, float(count), 100.0 * count), count * count, 1
    total, squares = sum(baseline), sum(map(operator.mul, baseline, baseline))
    # z = d / √s exactly, with d = n·(c - μ) and s = n²·max(σ², μ, 1): both whole numbers.
    deviation, scale = n * count - total, max(n * squares - total * total, n * total, n * n)
    score = math.copysign(math.sqrt(deviation * deviation / scale), deviation)
    spread = math.sqrt((n * squares - total * total) / (n * n))
    figures = (total / n, spread, score, 100 * (n * count - total) / (total + n))
    return figures, deviation * abs(deviation), scale


def rising_ranked(values: dict[str, int], past: list[dict[str, int]], baseline: int
                  ) -> list[tuple[str, int, float, float, float, float]]:
    """(key, value, μ, σ, z, growth %), by z, then value, then key."""
    windows: dict[str, list[int]] = {key: [0] * baseline for key in values}
    for index, window in enumerate(past):
        for key, value in window.items():
            windows[key][index] = value
    scored = []
    exact: dict[str, tuple[int, int]] = {}
    approx: dict[str, float] = {}
    for key, value in values.items():
        figures, numerator, denominator = _rising_terms(value, windows[key])
        scored.append((key, value, *figures))
        exact[key] = (numerator, denominator)
        # A quotient of two ints is correctly rounded, as float(Fraction) is, without the Fraction.
        approx[key] = numerator / denominator
    # Floats first: a correctly rounded quotient never inverts the order of two fractions, it can
    # only make them equal; each run of equal floats is then put in exact order. Comparing
    # Fractions throughout cost more than the rest of a warm rising read.
    scored.sort(key=lambda item: (-approx[item[0]], -item[1], item[0]))
    for _, run in groupby(range(len(scored)), key=lambda i: approx[scored[i][0]]):
        indices = list(run)
        if len(indices) > 1:
            run_of = slice(indices[0], indices[-1] + 1)
            scored[run_of] = sorted(scored[run_of],
                                    key=lambda item: (-Fraction(*exact[item[0]]), -item[1], item[0]))
    return scored
