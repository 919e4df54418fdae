"""Realistic synthetic traffic for ``trend demo``: Zipf-distributed Korean and English keywords,
three event types, a few segments, keywords that burst and fade, and some late and duplicate events."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from trend.model import MINUTE_MS

KEYWORDS = [
    "우산", "패딩", "목도리", "전기장판", "가습기", "김장", "붕어빵", "크리스마스 선물", "캠핑", "에어프라이어",
    "umbrella", "winter coat", "running shoes", "headphones", "air fryer", "coffee beans", "yoga mat",
    "phone case", "desk lamp", "board games", "hot pack", "thermos", "scarf", "boots", "humidifier",
    "노트북", "무선 이어폰", "청소기", "운동화", "향수", "귤", "라면", "떡볶이", "호떡", "스키장",
]
EVENTS = (("search", 0.6), ("view", 0.3), ("purchase", 0.1))
SEGMENTS = ("", "kr", "us", "jp")


@dataclass(frozen=True)
class Burst:
    key: str
    peak_ms: int
    width_ms: int
    strength: float  # extra events per minute at the peak

    def rate(self, ts: int) -> float:
        return self.strength * math.exp(-(((ts - self.peak_ms) / self.width_ms) ** 2))


class Traffic:
    """Generates events; deterministic for a given seed."""

    def __init__(self, now_ms: int, rate_per_minute: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.rate = rate_per_minute
        weights = [1 / (rank + 1) ** 1.1 for rank in range(len(KEYWORDS))]
        self.keys = KEYWORDS[:]
        self.rng.shuffle(self.keys)
        self.weights = weights
        self._sent_ids: list[str] = []
        self._serial = 0
        self.bursts = [
            Burst("붕어빵", now_ms - 20 * MINUTE_MS, 12 * MINUTE_MS, rate_per_minute * 0.25),
            Burst("snow boots", now_ms - 3 * MINUTE_MS, 10 * MINUTE_MS, rate_per_minute * 0.2),
            Burst("첫눈", now_ms - 70 * MINUTE_MS, 20 * MINUTE_MS, rate_per_minute * 0.3),
        ]

    def minute(self, start_ms: int) -> list[dict[str, Any]]:
        """One minute of traffic starting at ``start_ms``."""
        events = [self._event(start_ms + self.rng.randrange(MINUTE_MS), self._pick_key())
                  for _ in range(self._poisson(self.rate))]
        for burst in self.bursts:
            for _ in range(self._poisson(burst.rate(start_ms))):
                events.append(self._event(start_ms + self.rng.randrange(MINUTE_MS), burst.key, event="search"))
        for _ in range(max(1, len(events) // 50)):  # late: an event from up to 30 minutes ago arrives now
            events.append(self._event(start_ms - self.rng.randrange(30 * MINUTE_MS), self._pick_key()))
        if self._sent_ids:  # a client retrying: the same event_id again, counted once
            events.append({**self._event(start_ms, self._pick_key()), "event_id": self.rng.choice(self._sent_ids)})
        return events

    def _pick_key(self) -> str:
        return self.rng.choices(self.keys, self.weights)[0]

    def _event(self, ts: int, key: str, event: str | None = None) -> dict[str, Any]:
        kind = event or self.rng.choices([e for e, _ in EVENTS], [w for _, w in EVENTS])[0]
        self._serial += 1
        payload: dict[str, Any] = {"event": kind, "key": key, "ts": ts / 1000,
                                   "segment": self.rng.choice(SEGMENTS), "user_id": f"u{self.rng.randrange(5000)}"}
        if kind == "purchase":
            payload["value"] = float(self.rng.randrange(5, 300)) * 1000
        if self.rng.random() < 0.05:
            payload["event_id"] = f"demo-{self._serial}"
            self._sent_ids.append(payload["event_id"])
            del self._sent_ids[:-500]
        return payload

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 50:  # normal approximation; exactness does not matter for a demo
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, k, product = math.exp(-mean), 0, self.rng.random()
        while product > limit:
            k += 1
            product *= self.rng.random()
        return k


def history(traffic: Traffic, now_ms: int, minutes: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(minute index, events) for every minute of the last ``minutes`` and the current minute up to
    ``now_ms``, oldest first: live traffic can start where this ends, leaving no hole."""
    current = now_ms - now_ms % MINUTE_MS
    for index in range(minutes, -1, -1):
        start = current - index * MINUTE_MS
        yield minutes - index, [e for e in traffic.minute(start) if e["ts"] * 1000 <= now_ms]


def live(traffic: Traffic, since_ms: int, now_ms: int) -> list[dict[str, Any]]:
    """The traffic of (``since_ms``, ``now_ms``], for ``--live``: each batch starts where the one
    before ended, however long ingesting it took."""
    span = max(1, now_ms - since_ms)
    events = traffic.minute(now_ms - MINUTE_MS)
    share = round(len(events) * min(span, MINUTE_MS) / MINUTE_MS)
    return [{**e, "ts": (now_ms - traffic.rng.randrange(span)) / 1000}
            for e in traffic.rng.sample(events, min(share, len(events)))]
