"""Which table answers which part of a range: pure, no I/O (DESIGN section 4).

A bucket of level L is read from ``agg_L`` when it is closed and no marker lies inside its range at
L or any finer level. Otherwise it is computed from the level below over its range, by the same
rule, down to ``fact_events`` for minutes that are open or dirty. The answer then equals a GROUP BY
over ``fact_events``, whether or not the jobs have run.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping

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
        spans: list[Span] = []
        self._cover(start, end, index, spans)
        return _merged(spans)

    def _clean(self, index: int, bucket: int, width: int) -> bool:
        for level in self.levels.levels[: index + 1]:
            dirty = self._dirty[level.name]
            position = bisect_left(dirty, bucket)
            if position < len(dirty) and dirty[position] < bucket + width:
                return False
        return True

    def _cover(self, start: int, end: int, index: int, out: list[Span]) -> None:
        if start >= end:
            return
        level = self.levels[index]
        width = level.width
        if index == 0:
            for minute in range(start, end, width):
                closed = level.is_closed(minute, self.now_ms)
                if closed and self._clean(0, minute, width):
                    out.append(Span(level.name, minute, minute + width))
                else:
                    out.append(Span(RAW, minute, minute + width, settled=closed))
            return
        first = -(-start // width) * width
        last = end - end % width
        if first >= last:
            self._cover(start, end, index - 1, out)
            return
        self._cover(start, first, index - 1, out)
        for bucket in range(first, last, width):
            if level.is_closed(bucket, self.now_ms) and self._clean(index, bucket, width):
                out.append(Span(level.name, bucket, bucket + width))
            else:
                self._cover(bucket, bucket + width, index - 1, out)
        self._cover(last, end, index - 1, out)


def _merged(spans: list[Span]) -> list[Span]:
    """Join neighbouring spans of one source, so each source needs few range predicates."""
    result: list[Span] = []
    for span in spans:
        last = result[-1] if result else None
        if last and (last.source, last.settled, last.end) == (span.source, span.settled, span.start):
            result[-1] = Span(span.source, last.start, span.end, span.settled)
        else:
            result.append(span)
    return result
