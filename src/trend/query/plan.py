"""Which table answers which part of a range: pure, no I/O (docs/architecture.md, "Reads").

A bucket of level L is read from ``agg_L`` when it is closed and no marker lies inside its range at
L or any finer level. Otherwise it is computed from the level below over its range, by the same
rule, down to ``fact_events`` for minutes that are open or dirty. The answer then equals a GROUP BY
over ``fact_events``, whether or not the jobs have run.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trend.model import MINUTE_MS, RAW, Hierarchy, Span


class Planner:
    """Plans reads against one snapshot of the markers, at one moment."""

    def __init__(self, levels: Hierarchy, markers: Iterable[tuple[str, int]], now_ms: int) -> None:
        self.levels = levels
        by_level: dict[str, list[int]] = {name: [] for name in levels.names}
        for level, bucket in markers:
            by_level.setdefault(level, []).append(bucket)
        self._dirty: Mapping[str, list[int]] = {name: sorted(buckets) for name, buckets in by_level.items()}
        self.now_ms = now_ms

    def cover(self, start: int, end: int, top_level: str | None = None) -> list[Span]:
        """Spans covering ``[start, end)`` (minute-aligned), none coarser than ``top_level``, merged."""
        if start % MINUTE_MS or end % MINUTE_MS:
            raise ValueError("a read range must be aligned to whole minutes")
        index = self.levels.index(top_level if top_level is not None else self.levels.top.name)
        spans: list[_Growing] = []
        self._cover(start, end, index, spans)
        return [Span(span.source, span.start, span.end, span.settled) for span in spans]

    def _clean(self, index: int, bucket: int, width: int) -> bool:
        for level in self.levels.levels[: index + 1]:
            dirty = self._dirty[level.name]
            position = bisect_left(dirty, bucket)
            if position < len(dirty) and dirty[position] < bucket + width:
                return False
        return True

    def _cover(self, start: int, end: int, index: int, out: list[_Growing]) -> None:
        if start >= end:
            return
        level = self.levels[index]
        width = level.width
        if index == 0:
            # Runs, not minutes: the clean closed minutes between two markers are one span.
            open_from = max(start, min(end, self.now_ms - width - level.grace + 1))
            open_from += -(open_from - start) % width
            dirty = self._dirty[level.name]
            at = start
            for bucket in dirty[bisect_left(dirty, start):bisect_left(dirty, open_from)]:
                _add(out, level.name, at, bucket, False)
                _add(out, RAW, bucket, bucket + width, True)
                at = bucket + width
            _add(out, level.name, at, open_from, False)
            _add(out, RAW, open_from, end, False)
            return
        first = -(-start // width) * width
        last = end - end % width
        if first >= last:
            self._cover(start, end, index - 1, out)
            return
        self._cover(start, first, index - 1, out)
        for bucket in range(first, last, width):
            if level.is_closed(bucket, self.now_ms) and self._clean(index, bucket, width):
                _add(out, level.name, bucket, bucket + width, False)
            else:
                self._cover(bucket, bucket + width, index - 1, out)
        self._cover(last, end, index - 1, out)


def _add(out: list[_Growing], source: str, start: int, end: int, settled: bool) -> None:
    """Append a span, joined to the last one where it continues it from the same source, so each
    source needs few range predicates. Mutable while planning: a late batch over hundreds
    of minutes adds one per minute. An empty span is left out."""
    if start >= end:
        return
    if out:
        last = out[-1]
        if last.source == source and last.settled == settled and last.end == start:
            last.end = end
            return
    out.append(_Growing(source, start, end, settled))


@dataclass(slots=True)
class _Growing:
    """A :class:`Span` while planning: its end moves as neighbouring spans join it."""

    source: str
    start: int
    end: int
    settled: bool
