"""The ground truth: a plain Python model of what every table and read must equal."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlalchemy import select, text

from trend import measures
from trend.model import RAW, Level, floor_to
from trend.service import Trend
from trend.storage import sketches
from trend.storage.shared import data_versions
from trend.storage.shared.schema import fact_events, level_table, rollup_dirty

GroupKey = tuple[int, str, str, str]  # bucket, event, segment, key
Measures = tuple[Any, ...]  # one value per measure, in the order of measures.MEASURES


@dataclass
class Reference:
    """Events as the store should hold them: first ``event_id`` wins, every other event counts."""

    events: list[dict[str, Any]] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)

    def add(self, ts: int, event: str, key: str, segment: str = "", value: float = 1.0,
            event_id: str | None = None, user_id: str | None = None) -> bool:
        if event_id is not None:
            if event_id in self.seen_ids:
                return False
            self.seen_ids.add(event_id)
        self.events.append({"ts": ts, "event": event, "key": key, "segment": segment, "value": value,
                            "user_id": user_id, "event_id": event_id})
        return True

    def grouped(self, level: Level) -> dict[GroupKey, Measures]:
        return group_events(self.events, level)


def group_events(events: Iterable[Mapping[str, Any]], level: Level) -> dict[GroupKey, Measures]:
    """The GROUP BY of ``level`` over ``events``, each measure folded as the measure spec says and shown
    as a read shows it (a sketch as its number of distinct users, exact here)."""
    groups: dict[GroupKey, list[Mapping[str, Any]]] = {}
    for e in events:
        groups.setdefault((floor_to(e["ts"], level.width), e["event"], e["segment"], e["key"]), []).append(e)
    return {group: tuple(m.read_value(m.fold_raw([{"user_id": None, "event_id": None, **e} for e in members]))
                         for m in measures.MEASURES)
            for group, members in groups.items()}


def table_rows(trend: Trend, level: Level) -> dict[GroupKey, Measures]:
    """The rows of a level's table; a sketch is read as its estimate. Tests keep user counts small,
    where the sketches are exact, so the estimates compare equal to the reference."""
    table = level_table(level)
    with trend.db.read() as tx:
        in_sql = tx.dialect.caps.sketches_in_sql  # else the column holds DataSketches' bytes, estimated here
        columns = [tx.dialect.estimate(table.c[m.column]) if m.is_sketch and in_sql else table.c[m.column]
                   for m in measures.MEASURES]
        query = select(table.c.bucket, table.c.event, table.c.segment, table.c.key, *columns)
        rows = [tuple(r) for r in tx.execute(query)]
    if not in_sql:
        rows = [(*r[:4], *(sketches.estimate(v) if m.is_sketch else v
                           for m, v in zip(measures.MEASURES, r[4:], strict=True)))
                for r in rows]
    return {(r[0], r[1], r[2], r[3]): tuple(m.python_value(v) for m, v in zip(measures.MEASURES, r[4:], strict=True))
            for r in rows}


def stored_events(trend: Trend) -> list[dict[str, Any]]:
    with trend.db.read() as tx:
        return [dict(r._mapping) for r in tx.execute(select(fact_events))]


def markers(trend: Trend) -> list[tuple[str, int]]:
    with trend.db.read() as tx:
        return [(r.level, r.bucket) for r in tx.execute(select(rollup_dirty.c.level, rollup_dirty.c.bucket))]


def closed(rows: Mapping[GroupKey, Measures], level: Level, now_ms: int) -> dict[GroupKey, Measures]:
    return {g: m for g, m in rows.items() if level.is_closed(g[0], now_ms)}


def differing_levels(trend: Trend, expected_events: Iterable[Mapping[str, Any]], now_ms: int) -> list[str]:
    """The levels whose closed buckets differ from the GROUP BY of the events, with how many differ."""
    events = list(expected_events)
    found = []
    for level in trend.levels:
        expected = closed(group_events(events, level), level, now_ms)
        actual = closed(table_rows(trend, level), level, now_ms)
        wrong = {group[0] for group in expected.keys() | actual.keys() if expected.get(group) != actual.get(group)}
        if wrong:
            found.append(f"{level.name}: {len(wrong)} buckets")
    return found


def assert_levels_equal(trend: Trend, expected_events: Iterable[Mapping[str, Any]], now_ms: int) -> None:
    """Every closed bucket of every level equals the GROUP BY of the events, row by row."""
    events = list(expected_events)
    for level in trend.levels:
        expected = closed(group_events(events, level), level, now_ms)
        actual = closed(table_rows(trend, level), level, now_ms)
        wrong = sorted(group for group in expected.keys() | actual.keys() if expected.get(group) != actual.get(group))
        # Which groups, and how: enough to tell a lost event from a stale row when a race is caught.
        shown = "; ".join(f"{group}: stored {actual.get(group)}, expected {expected.get(group)}" for group in wrong[:5])
        assert actual == expected, f"{level.name} differs from the reference in {len(wrong)} groups: {shown}"


def assert_clean_buckets_equal(trend: Trend, expected_events: Iterable[Mapping[str, Any]], now_ms: int) -> None:
    """The invariant reads rely on: a closed bucket with no marker at its level or finer is exact."""
    events = list(expected_events)
    dirty = markers(trend)
    for level in trend.levels:
        finer = [lv for lv in trend.levels if lv.width <= level.width]

        def clean(bucket: int, level: Level = level, finer: list[Level] = finer) -> bool:
            return not any(
                lv.name == name and bucket <= b < bucket + level.width for lv in finer for name, b in dirty
            )

        expected = {g: m for g, m in closed(group_events(events, level), level, now_ms).items() if clean(g[0])}
        actual = {g: m for g, m in closed(table_rows(trend, level), level, now_ms).items() if clean(g[0])}
        assert actual == expected, f"clean closed buckets of {level.name} differ from the reference"


def clear_all(trend: Trend) -> None:
    """Empty every table, so one database serves many property-test examples."""
    with trend.db.write() as tx:
        for table in ("fact_events", *(level.table for level in trend.levels), "rollup_dirty", "job_runs",
                      "trend_dimensions"):
            tx.execute(text(f"DELETE FROM {table}"))
        if tx.dialect.name == "citus":  # event_ids claimed on Citus live in a table of their own
            tx.execute(text("DELETE FROM trend_event_ids"))
        # Rows changed behind trend's back: every data version moves, so kept totals are void.
        tx.execute(text("UPDATE trend_data_versions SET version = version + 1"))
        data_versions.bump(tx, RAW)


def closed_markers(trend: Trend, now_ms: int) -> list[tuple[str, int]]:
    by_name = trend.levels.by_name
    return [(name, b) for name, b in markers(trend) if by_name[name].is_closed(b, now_ms)]


def settle(trend: Trend, now_ms: int, attempts: int = 50) -> None:
    """Run until no closed bucket is dirty. A killed PostgreSQL client's row locks last until the
    server notices the dead socket, and SKIP LOCKED passes those buckets over until then."""
    for _ in range(attempts):
        trend.rollup()
        if not closed_markers(trend, now_ms):
            return
        time.sleep(0.1)
    raise AssertionError(f"closed buckets still dirty: {closed_markers(trend, now_ms)[:5]}")


# -- reads, computed from the events alone --


def ref_counts(events: Iterable[Mapping[str, Any]], event: str, segment: str | None, start: int,
               end: int, by: str = "count") -> Counter[str]:
    """Per key: its events (``by="count"``) or its distinct known users (``by="users"``; keys without any
    are left out, as a ranking by users leaves them out)."""
    chosen = [e for e in events if e["event"] == event and (segment is None or e["segment"] == segment)
              and start <= e["ts"] < end]
    if by == "count":
        return Counter(e["key"] for e in chosen)
    people: dict[str, set[str]] = {}
    for e in chosen:
        if e.get("user_id") is not None:
            people.setdefault(e["key"], set()).add(e["user_id"])
    return Counter({key: len(users) for key, users in people.items()})


def ref_top(events: Iterable[Mapping[str, Any]], event: str, segment: str | None, start: int, end: int,
            limit: int, by: str = "count") -> list[tuple[str, int]]:
    counts = ref_counts(events, event, segment, start, end, by)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]


def ref_series(events: Iterable[Mapping[str, Any]], event: str, key: str | None, segment: str | None, width: int,
               start: int, end: int) -> list[tuple[Any, ...]]:
    """(bucket, one value per measure) for every bucket of ``[start, end)``; empty buckets hold each measure's empty."""
    chosen = [e for e in events if e["event"] == event and (key is None or e["key"] == key)
              and (segment is None or e["segment"] == segment) and start <= e["ts"] < end]
    result = []
    for t in range(start, end, width):
        members = [{"user_id": None, **e} for e in chosen if t <= e["ts"] < t + width]
        result.append((t, *(m.read_value(m.fold_raw(members)) if members else m.empty
                            for m in measures.MEASURES)))
    return result


def ref_rising(events: Iterable[Mapping[str, Any]], event: str, segment: str | None, start: int, end: int,
               baseline: int, min_count: int, by: str = "count", score: str = "poisson"
               ) -> list[tuple[str, int, float]]:
    """(key, value of ``by``, score) of the keys that rise (score above 0), by score, then value, then
    key; each score as docs/queries.md defines it, written out here."""
    events = list(events)
    width = end - start
    current = ref_counts(events, event, segment, start, end, by)
    history = [ref_counts(events, event, segment, start - n * width, end - n * width, by)
               for n in range(1, baseline + 1)]
    candidates = {key: count for key, count in current.items() if count >= min_count}
    pasts = {key: [h.get(key, 0) for h in history] for key in candidates}
    if score == "zscore":
        return _ref_zscores(candidates, pasts)
    scored = []
    totals = [sum(p[n] for p in pasts.values()) for n in range(baseline)]  # of every candidate
    now_total = sum(candidates.values())
    for key, count in candidates.items():
        own = pasts[key]
        others_now = now_total - count
        others = [total - mine for total, mine in zip(totals, own, strict=True)]
        if sum(others) == 0 or others_now == 0:
            q, ratio = 1 / (baseline + 1), None
        else:
            q, ratio = others_now / (others_now + sum(others)), sum(own) / sum(others)
        n = count + sum(own)
        # The deviance of Binomial(n, q) at count, signed as count against n·q.
        deviance = 2 * sum(x * math.log(x / expected) for x, expected in ((count, n * q), (n - count, n * (1 - q)))
                           if x > 0)
        signed = math.copysign(math.sqrt(max(deviance, 0.0)), count - n * q)
        dispersion = 1.0
        if ratio is not None and sum(own) > 0:
            wobble = sum((b - ratio * o) ** 2 for b, o in zip(own, others, strict=True))
            dispersion = max(1.0, wobble / sum(max(ratio * o, 1.0) for o in others))
        if signed > 0:
            scored.append((key, count, signed / math.sqrt(dispersion)))
    return sorted(scored, key=lambda item: (-item[2], -item[1], item[0]))


def _ref_zscores(candidates: Mapping[str, int], pasts: Mapping[str, list[int]]) -> list[tuple[str, int, float]]:
    """``(c - μ) / max(σ, √μ, 1)``, in exact rationals: the order of equal scores is the documented
    tie-break, not float noise."""
    scored: list[tuple[str, int, Fraction]] = []
    for key, count in candidates.items():
        past = pasts[key]
        mean = Fraction(sum(past), len(past))
        variance = sum(((p - mean) ** 2 for p in past), Fraction(0)) / len(past)
        signed_square = (count - mean) * abs(count - mean) / max(variance, mean, Fraction(1))
        if signed_square > 0:
            scored.append((key, count, signed_square))
    ordered = sorted(scored, key=lambda item: (-item[2], -item[1], item[0]))
    return [(key, count, math.copysign(math.sqrt(abs(square)), square)) for key, count, square in ordered]
