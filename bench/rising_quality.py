"""How well each rising score finds real bursts: synthetic streams with bursts of known size and time.

A long tail of ``--keys`` keys (Zipf 1.1) sends events minute by minute, each a Poisson draw around its
share of the stream's volume; each key's share also swings by up to half over a day, at hours of its
own. The volume has a daily cycle and a weekly one, and the streams differ:

* ``steady``: the cycles only;
* ``ramp``: the volume grows ×5 over the two hours that end with the burst;
* ``surge``: the whole stream jumps ×5 in the burst's own 15 minutes (a push notification, a TV spot);
* ``drop``: the whole stream falls to a fifth in the burst's 15 minutes;
* ``quiet``: no burst, for false alarms: 24 hours with the cycles, two surges and a drop of the whole
  stream, and new keys appearing.

Each burst stream plants ``--planted`` ordinary keys (``--planted-ranks``, 20 to 200) taking ``--factor`` times their
share for 15 minutes, and new keys appear at random times before. Every score ranks the same exact
window counts, as ``rising`` would (15-minute windows, a baseline of 12, candidates with at least
``--min-count``). Reported per score and stream, over ``--runs`` random streams: precision of the
first 3 and the first 10 against the planted keys, recall of the first 10, the delay from a burst's
start to its first appearance in the first 10 (evaluated each minute), and on ``quiet`` the false
alarms per hour at several alert scores: keys at or above it, firing at most once an hour each (a
rule's cool-down), new keys not counted (they are breakouts, and labelled so); and the planted keys'
median score, which shows how one score's thresholds map to another's.

    python -m bench.rising_quality [--runs 5] [--keys 2000]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.common import machine
from trend.rising import Rise, Score, by_share, rising_ranked, share_score

# Each score the benchmark compares, by name: the two trend offers, and the share z-score.
SCORERS: dict[str, Callable[[dict[str, int], list[dict[str, int]]], list[Rise]]] = {
    Score.POISSON.value: lambda values, past: rising_ranked(values, past, 12, Score.POISSON),
    "share": lambda values, past: by_share(values, past, 12, share_score),
    Score.ZSCORE.value: lambda values, past: rising_ranked(values, past, 12, Score.ZSCORE),
}

WINDOW = 15
BASELINE = 12
DAY = 1440


@dataclass(frozen=True)
class Stream:
    counts: np.ndarray  # keys × minutes
    planted: list[int]  # key indices
    burst_start: int | None  # minute
    new_keys: set[int]


def volume(minutes: int, kind: str, burst_start: int, rng: np.random.Generator, base: float) -> np.ndarray:
    """Events per minute of the whole stream."""
    t = np.arange(minutes)
    daily = 1 + 0.5 * np.sin(2 * np.pi * (t / DAY - 0.3))
    weekly = 1 + 0.15 * np.sin(2 * np.pi * t / (7 * DAY))
    shape = base * daily * weekly
    if kind == "ramp":
        ramp = np.clip((t - (burst_start + WINDOW - 120)) / 120, 0, 1)
        shape *= 1 + 4 * ramp
    elif kind == "surge":
        shape[burst_start:burst_start + WINDOW] *= 5
    elif kind == "drop":
        shape[burst_start:burst_start + WINDOW] /= 5
    elif kind == "quiet":
        for start, factor in ((int(rng.integers(300, 600)), 5.0), (int(rng.integers(800, 1100)), 3.0),
                              (int(rng.integers(1200, 1400)), 0.25)):
            shape[start:start + int(rng.integers(10, 40))] *= factor
    return shape


def stream(kind: str, keys: int, planted_count: int, factor: float, rng: np.random.Generator,
           base: float, planted_ranks: tuple[int, int] = (20, 200)) -> Stream:
    minutes = DAY if kind == "quiet" else (BASELINE + 2) * WINDOW + 120
    burst_start = minutes - WINDOW
    shares = 1 / np.arange(1, keys + 1) ** 1.1
    shares /= shares.sum()
    rng.shuffle(shares[30:])  # key indices are not ranks beyond the head
    rates = np.outer(shares, volume(minutes, kind, burst_start, rng, base))
    # Each key's own day: its share swings by up to half around its mean, at its own hours.
    amplitude, phase = rng.uniform(0, 0.5, keys), rng.uniform(0, 1, keys)
    rates *= 1 + amplitude[:, None] * np.sin(2 * np.pi * (np.arange(minutes)[None, :] / DAY - phase[:, None]))
    new_keys = {int(k) for k in rng.choice(np.arange(100, keys), size=max(1, keys // 200), replace=False)}
    for key in new_keys:  # absent until a random minute
        rates[key, : int(rng.integers(minutes // 4, minutes - 2 * WINDOW))] = 0
    planted: list[int] = []
    if kind != "quiet":
        order = np.argsort(-shares)
        first, last = planted_ranks
        candidates = [int(k) for k in order[first:last] if int(k) not in new_keys]
        planted = [int(k) for k in rng.choice(candidates, size=planted_count, replace=False)]
        for key in planted:
            rates[key, burst_start:burst_start + WINDOW] *= factor
    return Stream(rng.poisson(rates), planted, None if kind == "quiet" else burst_start, new_keys)


def rising_at(counts_prefix: np.ndarray, end: int, min_count: int, score: str) -> list[Rise]:
    """The ranking ``rising`` gives for the window ending at minute ``end`` (exclusive)."""
    def window(stop: int) -> np.ndarray:
        return np.asarray(counts_prefix[:, stop] - counts_prefix[:, stop - WINDOW])

    now = window(end)
    candidates = np.nonzero(now >= min_count)[0]
    values = {str(k): int(now[k]) for k in candidates}
    past = []
    for n in range(1, BASELINE + 1):
        stop = end - n * WINDOW
        past.append({} if stop - WINDOW < 0 else
                    {str(k): int(v) for k, v in zip(candidates, window(stop)[candidates], strict=True) if v})
    return [rise for rise in SCORERS[score](values, past) if rise.score > 0]


@dataclass
class Quality:
    top3: list[float]
    top10: list[float]
    recall10: list[float]
    delays: list[float]
    false_alarms_per_hour: list[dict[float, float]]
    planted_scores: list[float]


def evaluate(kinds: list[str], scores: list[str], args: argparse.Namespace) -> dict[str, dict[str, Quality]]:
    found = {score: {kind: Quality([], [], [], [], [], []) for kind in kinds} for score in scores}
    for run in range(args.runs):
        for kind in kinds:
            rng = np.random.default_rng(1000 * run + kinds.index(kind))
            made = stream(kind, args.keys, args.planted, args.factor, rng, args.volume, args.planted_ranks)
            prefix = np.concatenate([np.zeros((args.keys, 1), dtype=np.int64), np.cumsum(made.counts, axis=1)], axis=1)
            for score in scores:
                quality = found[score][kind]
                if made.burst_start is None:
                    quality.false_alarms_per_hour.append(_false_alarms(prefix, made, score, args))
                    continue
                planted = {str(k) for k in made.planted}
                rises = rising_at(prefix, made.burst_start + WINDOW, args.min_count, score)
                quality.planted_scores += [r.score for r in rises if r.key in planted]
                ranked = [r.key for r in rises]
                quality.top3.append(len(planted & set(ranked[:3])) / 3)
                quality.top10.append(len(planted & set(ranked[:10])) / min(10, len(planted)) if planted else 0)
                quality.recall10.append(len(planted & set(ranked[:10])) / len(planted))
                quality.delays.append(_delay(prefix, made, score, args, planted))
    return found


def _delay(prefix: np.ndarray, made: Stream, score: str, args: argparse.Namespace, planted: set[str]) -> float:
    """Minutes from the burst's start until every planted key has been in the first 10 once."""
    assert made.burst_start is not None
    seen: set[str] = set()
    for minute in range(1, WINDOW + 1):
        ranked = rising_at(prefix, made.burst_start + minute, args.min_count, score)[:10]
        seen |= planted & {r.key for r in ranked}
        if seen == planted:
            return float(minute)
    return math.inf


THRESHOLDS = (3.0, 4.0, 5.0, 6.0, 8.0)


def _false_alarms(prefix: np.ndarray, made: Stream, score: str, args: argparse.Namespace) -> dict[float, float]:
    """Firings an hour of an alert rule at each threshold (a firing per key an hour at most)."""
    last_fired: dict[tuple[float, str], int] = {}
    fired = dict.fromkeys(THRESHOLDS, 0)
    begin = (BASELINE + 1) * WINDOW
    for end in range(begin, made.counts.shape[1] + 1):
        for rise in rising_at(prefix, end, args.min_count, score):
            if rise.score < THRESHOLDS[0]:
                break
            if int(rise.key) in made.new_keys or rise.breakout:
                continue
            for threshold in THRESHOLDS:
                if rise.score >= threshold and end - last_fired.get((threshold, rise.key), -10**9) >= 60:
                    last_fired[(threshold, rise.key)] = end
                    fired[threshold] += 1
    hours = (int(made.counts.shape[1]) - begin) / 60
    return {threshold: count / hours for threshold, count in fired.items()}


def _summary(quality: Quality) -> dict[str, float | None]:
    def mean(values: list[float]) -> float | None:
        return round(statistics.fmean(values), 3) if values else None

    finite = [d for d in quality.delays if math.isfinite(d)]
    if quality.false_alarms_per_hour:
        runs = quality.false_alarms_per_hour
        return {f"false_alarms_per_hour_at_{threshold:g}": mean([run[threshold] for run in runs])
                for threshold in THRESHOLDS}
    return {"precision_top3": mean(quality.top3), "precision_top10": mean(quality.top10),
            "recall_top10": mean(quality.recall10),
            "delay_min_median": statistics.median(finite) if finite else None,
            "never_found": sum(1 for d in quality.delays if not math.isfinite(d)),
            "planted_score_median": round(statistics.median(quality.planted_scores), 2) if quality.planted_scores
            else None}


def main(argv: list[str] | None = None, print_: Callable[[str], None] = print) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--keys", type=int, default=2000)
    p.add_argument("--planted", type=int, default=3)
    p.add_argument("--factor", type=float, default=4.0)
    p.add_argument("--volume", type=float, default=1000.0, help="events a minute, before the cycles")
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--planted-ranks", type=lambda text: tuple(int(n) for n in text.split(":")), default=(20, 200),
                   help="the popularity ranks planted keys are drawn from, first:last")
    args = p.parse_args(argv)
    kinds = ["steady", "ramp", "surge", "drop", "quiet"]
    found = evaluate(kinds, list(SCORERS), args)
    table = {score: {kind: _summary(q) for kind, q in by_kind.items()} for score, by_kind in found.items()}
    report = {"machine": machine(), "runs": args.runs, "keys": args.keys, "factor": args.factor,
              "planted": args.planted, "planted_ranks": args.planted_ranks, "results": table}
    print_(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
