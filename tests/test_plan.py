"""The read planner against its rule, minute by minute (docs/architecture.md, "Reads"; docs/queries.md).

A bucket of level L inside the range is read from ``agg_L`` when it is closed and no marker lies in
it at L or any finer level; otherwise its part is planned at the level below, down to raw minutes,
which are settled when closed. The planner works in runs of minutes, so this checks it against the
rule applied to each minute on its own."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from trend.model import DAY_MS, HOUR_MS, LEVELS, MINUTE_MS, RAW, Span
from trend.query.plan import Planner

T = 1_763_000_000_000 - 1_763_000_000_000 % DAY_MS
MINUTES = 6 * 60  # a range of up to six hours, so 1h buckets both fit and get cut


def _source_of(minute: int, start: int, end: int, markers: set[tuple[str, int]], now: int) -> tuple[str, bool]:
    """The rule for one minute: the coarsest level whose bucket holding it lies inside the range, is
    closed and has no marker at its level or finer; else a raw minute, settled when closed."""
    for index in range(len(LEVELS.levels) - 1, -1, -1):
        level = LEVELS.levels[index]
        bucket = minute - minute % level.width
        inside = start <= bucket and bucket + level.width <= end
        clean = not any((finer.name, b) in markers
                        for finer in LEVELS.levels[:index + 1]
                        for b in range(bucket, bucket + level.width, finer.width))
        if inside and level.is_closed(bucket, now) and clean:
            return level.name, False
    return RAW, LEVELS.finest.is_closed(minute, now)


@settings(max_examples=300, deadline=None)
@given(first=st.integers(0, MINUTES), length=st.integers(0, MINUTES), now=st.integers(0, MINUTES + 90),
       marked=st.lists(st.tuples(st.sampled_from([level.name for level in LEVELS]), st.integers(0, MINUTES + 60)),
                       max_size=12))
def test_every_minute_comes_from_the_source_the_rule_gives(first: int, length: int, now: int,
                                                           marked: list[tuple[str, int]]) -> None:
    start, end, now_ms = T + first * MINUTE_MS, T + (first + length) * MINUTE_MS, T + now * MINUTE_MS + 7_000
    markers = {(name, T + (m * MINUTE_MS) - (m * MINUTE_MS) % LEVELS.by_name[name].width) for name, m in marked}
    spans = Planner(LEVELS, markers, now_ms).cover(start, end)
    assert [(s.start, s.end) for s in spans] == [(s.start, s.end) for s in spans if s.start < s.end]
    covered = [(minute, (span.source, span.settled))
               for span in spans for minute in range(span.start, span.end, MINUTE_MS)]
    assert [minute for minute, _ in covered] == list(range(start, end, MINUTE_MS))  # in order, once each
    assert [found for _, found in covered] == [_source_of(m, start, end, markers, now_ms)
                                               for m in range(start, end, MINUTE_MS)]
    # Merged: two neighbours never share a source, or the plan would read more ranges than it needs.
    assert all((a.source, a.settled) != (b.source, b.settled) for a, b in itertools.pairwise(spans))


def test_a_late_batch_over_hundreds_of_minutes_is_one_raw_span() -> None:
    now = T + 10 * HOUR_MS
    markers = [("1m", T + m * MINUTE_MS) for m in range(60, 541)]
    spans = Planner(LEVELS, markers, now).cover(T, now)
    assert Span(RAW, T + HOUR_MS, T + 541 * MINUTE_MS, settled=True) in spans
    assert len(spans) <= 6
