"""How much a key rises against the windows before: the scores ``rising`` ranks by. Pure, no I/O.

Every score reads the same figures of the candidates (keys with at least ``min_count`` now): their
value in the current window and in each of the baseline windows before it.

* ``poisson`` (the default): the key's share of the stream now against its share in the baseline,
  as the exact comparison of two Poisson rates. The stream is the candidates other than the key
  itself, so everyone arriving at once (a push notification, the lunch hour) moves no key, and a
  key's own burst does not raise what it is compared with. Given the key's ``n = c + Σ b`` events
  now and in the baseline together, under no change the number that falls now is binomial with
  ``q = others_now / (others_now + Σ others)``; the score is that binomial's signed root deviance
  (about a z-score, but with the small-count tails of the Poisson and the baseline's own
  uncertainty in it), divided by the root of the key's dispersion around its share in the baseline
  windows (at least 1).
* ``zscore`` (until this release): the key's count against its own baseline's mean and standard
  deviation, ``(c - μ) / max(σ, √μ, 1)``, blind to how the whole stream moved.

``share_score`` is the same share comparison with a normal approximation instead; the benchmark
compares it too. Both share scores expect ``expected = others_now · Σ b / Σ others``.

A key with nothing in the baseline is a *breakout*: its growth has no meaning (it would be some
thousands of percent), and it is said so instead. docs/queries.md has the formulas, and
docs/benchmarks.md the benchmark (bench/rising_quality.py) that chose the default.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from itertools import groupby


class Score(StrEnum):
    POISSON = "poisson"
    ZSCORE = "zscore"


@dataclass(frozen=True)
class Rise:
    key: str
    value: int
    expected: float  # the value the baseline leads one to expect now (zscore: the baseline's mean)
    spread: float  # the noise the score divides by (zscore: the baseline's standard deviation)
    score: float
    growth_pct: float | None  # 100 · ((value + 1) / (expected + 1) - 1); None for a breakout
    breakout: bool  # nothing in the baseline: new, or back after the whole baseline


def rising_ranked(values: Mapping[str, int], past: Sequence[Mapping[str, int]], baseline: int,
                  score: Score = Score.POISSON) -> list[Rise]:
    """Every candidate of ``values`` by score, highest first; ties by value, then key. ``past`` holds
    each baseline window's values of the candidates (absent: 0)."""
    if score is Score.ZSCORE:
        return _by_zscore(values, _windows(values, past, baseline))
    return by_share(values, past, baseline, poisson_score)


ShareScore = Callable[[str, int, Sequence[int], int, Sequence[int]], "Rise"]


def _windows(values: Mapping[str, int], past: Sequence[Mapping[str, int]], baseline: int) -> dict[str, list[int]]:
    """Each candidate's value in each baseline window, 0 where absent."""
    windows: dict[str, list[int]] = {key: [0] * baseline for key in values}
    for index, window in enumerate(past[:baseline]):
        for key, value in window.items():
            if key in windows:
                windows[key][index] = value
    return windows


def by_share(values: Mapping[str, int], past: Sequence[Mapping[str, int]], baseline: int,
             scored: ShareScore) -> list[Rise]:
    """The candidates ranked by a score of their share of the stream (:func:`poisson_score`, or
    :func:`share_score`, which bench/rising_quality.py compares)."""
    windows = _windows(values, past, baseline)
    now_total = sum(values.values())
    totals = [sum(counts[i] for counts in windows.values()) for i in range(baseline)]
    found = [scored(key, value, windows[key], now_total - value,
                    [total - own for total, own in zip(totals, windows[key], strict=True)])
             for key, value in values.items()]
    found.sort(key=lambda rise: (-rise.score, -rise.value, rise.key))
    return found


def share_score(key: str, count: int, own: Sequence[int], others_now: int, others: Sequence[int]) -> Rise:
    """One key's ``share`` score: ``own`` and ``others`` are its and the other candidates' values in
    each baseline window, ``others_now`` the others' value now."""
    own_sum, others_sum = sum(own), sum(others)
    breakout = own_sum == 0
    if others_sum == 0 or others_now == 0:
        # No stream to compare with (a key alone, or a stream that stopped): its own mean stands in.
        ratio, expected, scale = None, own_sum / max(len(own), 1), [1] * len(own)
    else:
        ratio = own_sum / others_sum
        expected, scale = ratio * others_now, list(others)
    dispersion = 1.0
    if ratio is not None and own_sum > 0:
        # The key's own wobble around its share in the baseline: Poisson's variance, or more.
        wobble = sum((b - ratio * o) ** 2 for b, o in zip(own, scale, strict=True))
        dispersion = max(1.0, wobble / sum(max(ratio * o, 1.0) for o in scale))
    spread = math.sqrt(dispersion * (max(expected, 1.0) + expected * expected / max(own_sum, 1)))
    score = (count - expected) / spread
    growth = None if breakout else 100 * ((count + 1) / (expected + 1) - 1)
    return Rise(key, count, expected, spread, score, growth, breakout)


def poisson_score(key: str, count: int, own: Sequence[int], others_now: int, others: Sequence[int]) -> Rise:
    """One key's ``poisson`` score: the exact comparison of two Poisson rates, conditioned on the
    key's events now and in the baseline together (n): under no change, the share of them that falls
    now is binomial with ``q = others_now / (others_now + Σ others)``. The score is the signed root of
    that binomial's likelihood ratio (a deviance: about a z-score, with the small-count tails of the
    Poisson and the baseline's own uncertainty in it), divided by the key's dispersion's root."""
    own_sum, others_sum = sum(own), sum(others)
    breakout = own_sum == 0
    if others_sum == 0 or others_now == 0:
        q, expected, scale = 1 / (len(own) + 1), own_sum / max(len(own), 1), [1] * len(own)
        ratio = None
    else:
        q = others_now / (others_now + others_sum)
        ratio = own_sum / others_sum
        expected, scale = ratio * others_now, list(others)
    n = count + own_sum
    deviance = 2 * (_xlogy(count, count / (n * q)) + _xlogy(n - count, (n - count) / (n * (1 - q)))) if n else 0.0
    signed = math.copysign(math.sqrt(max(deviance, 0.0)), count - n * q)
    dispersion = 1.0
    if ratio is not None and own_sum > 0:
        wobble = sum((b - ratio * o) ** 2 for b, o in zip(own, scale, strict=True))
        dispersion = max(1.0, wobble / sum(max(ratio * o, 1.0) for o in scale))
    spread = math.sqrt(dispersion * max(expected, 1.0))
    growth = None if breakout else 100 * ((count + 1) / (expected + 1) - 1)
    return Rise(key, count, expected, spread, signed / math.sqrt(dispersion), growth, breakout)


def _xlogy(x: float, ratio: float) -> float:
    return 0.0 if x == 0 else x * math.log(ratio)


def _by_zscore(values: Mapping[str, int], windows: Mapping[str, list[int]]) -> list[Rise]:
    found: list[Rise] = []
    exact: dict[str, tuple[int, int]] = {}
    approx: dict[str, float] = {}
    for key, value in values.items():
        rise, numerator, denominator = _zscore_terms(key, value, windows[key])
        found.append(rise)
        exact[key] = (numerator, denominator)
        # A quotient of two ints is correctly rounded, as float(Fraction) is, without the Fraction.
        approx[key] = numerator / denominator
    # Floats first: a correctly rounded quotient never inverts the order of two fractions, it can
    # only make them equal; each run of equal floats is then put in exact order.
    found.sort(key=lambda rise: (-approx[rise.key], -rise.value, rise.key))
    for _, run in groupby(range(len(found)), key=lambda i: approx[found[i].key]):
        indices = list(run)
        if len(indices) > 1:
            run_of = slice(indices[0], indices[-1] + 1)
            found[run_of] = sorted(found[run_of], key=lambda r: (-Fraction(*exact[r.key]), -r.value, r.key))
    return found


def zscore(count: int, baseline: Sequence[int]) -> Rise:
    """The ``zscore`` figures of one key: ``z = (c - μ) / max(σ, √μ, 1)``."""
    return _zscore_terms("", count, baseline)[0]


def zscore_order(count: int, baseline: Sequence[int]) -> Fraction:
    """A value that orders like z and is exact: sign(z)·z², so equal scores tie exactly."""
    _, numerator, denominator = _zscore_terms("", count, baseline)
    return Fraction(numerator, denominator)


def _zscore_terms(key: str, count: int, baseline: Sequence[int]) -> tuple[Rise, int, int]:
    """From whole numbers, rounded once each, so equal scores are equal floats; and the score's
    exact order as a numerator and a denominator."""
    n = len(baseline)
    if n == 0:
        return Rise(key, count, 0.0, 0.0, float(count), None, True), count * count, 1
    total, squares = sum(baseline), sum(map(operator.mul, baseline, baseline))
    # z = d / √s exactly, with d = n·(c - μ) and s = n²·max(σ², μ, 1): both whole numbers.
    deviation, scale = n * count - total, max(n * squares - total * total, n * total, n * n)
    score = math.copysign(math.sqrt(deviation * deviation / scale), deviation)
    spread = math.sqrt((n * squares - total * total) / (n * n))
    growth = None if total == 0 else 100 * (n * count - total) / (total + n)
    return (Rise(key, count, total / n, spread, score, growth, total == 0), deviation * abs(deviation), scale)
