"""The measures of a rollup row, defined once: pure, no I/O.

Each measure says how it is computed from raw events, how finer rows merge into a coarser bucket
(or into a read over many buckets), what a read calls it, and whether reads may rank by it. The
tables, the rollup's recompute, the reads, the series of HTTP and the CLI, the ``by`` choices and the
tests' reference model all work from :data:`MEASURES`, read when they run (through this module, never
a copy), so adding a measure is one entry here (plus the migration that adds its column).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Fold(Enum):
    """How a set of values becomes one. Storage turns each into SQL; ``fold_raw`` runs the raw ones in Python."""

    COUNT = "count"  # how many inputs there are (rows, or a column's non-NULL values)
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    SKETCH = "sketch"  # a HyperLogLog sketch of the distinct non-NULL inputs; NULL when there are none
    UNION = "union"  # the union of sketches; NULL when there are none


def _distinct(values: Sequence[Any]) -> frozenset[Any] | None:
    # The reference model's "sketch" is the exact set, so tests compare a sketch's estimate with its size.
    present = frozenset(v for v in values if v is not None)
    return present or None


_PYTHON: dict[Fold, Callable[[Sequence[Any]], Any]] = {
    Fold.COUNT: lambda values: sum(1 for value in values if value is not None),
    Fold.SUM: sum,
    Fold.MIN: lambda values: min(values, default=None),
    Fold.MAX: lambda values: max(values, default=None),
    Fold.SKETCH: _distinct,
}


@dataclass(frozen=True, slots=True)
class Measure:
    column: str  # the column in every agg_* table
    kind: str  # "integer", "real" or "sketch": storage picks the column type; a sketch reads as its estimate
    from_raw: Fold  # how a bucket's raw events give the value
    raw_input: str | None  # the fact_events column that from_raw reads; None for COUNT
    merge: Fold  # how finer rows, or a read's rows, combine
    read_as: str  # the name in a series point
    empty: Any  # the value of a bucket without events, in a zero-filled series
    # A measure whose value over the same rows is never smaller: a ranking by this one can stop
    # early, because a key can never reach more than that measure allows (distinct users ≤ events).
    bounded_by: str | None = None
    # False for bookkeeping measures that reads use but never show (series points, the API).
    shown: bool = True
    # top and rising may rank by it (``by=<read_as>``); every item they return carries it.
    ranks: bool = False
    # What the API's schema says of it.
    description: str = ""

    def fold_raw(self, events: Sequence[Mapping[str, Any]]) -> Any:
        """The value over raw events given as mappings of fact_events columns."""
        inputs = events if self.raw_input is None else [e[self.raw_input] for e in events]
        return _PYTHON[self.from_raw](inputs)

    @property
    def is_sketch(self) -> bool:
        return self.kind == "sketch"

    def read_value(self, value: Any) -> Any:
        """What a read shows for a folded value: a sketch (here, the exact set) shows its size."""
        if self.is_sketch:
            return 0 if value is None else len(value)
        return value

    def python_value(self, value: Any) -> Any:
        """A value as the database returned it, as Python's type (PostgreSQL's SUM of bigint is numeric).

        Reads return a sketch measure already as its estimate, a whole number."""
        if value is None:
            return None
        return float(value) if self.kind == "real" else round(value)


MEASURES: tuple[Measure, ...] = (
    Measure("count", "integer", Fold.COUNT, None, Fold.SUM, "count", 0, ranks=True, description="Events"),
    Measure("value_sum", "real", Fold.SUM, "value", Fold.SUM, "sum", 0.0, description="The sum of the events' values"),
    Measure("value_min", "real", Fold.MIN, "value", Fold.MIN, "min", None,
            description="The smallest value; null where there are no events"),
    Measure("value_max", "real", Fold.MAX, "value", Fold.MAX, "max", None,
            description="The largest value; null where there are no events"),
    # Events that carry a user: never fewer than their distinct users, and additive, so ranking by
    # users can rule a key out from this cheap sum instead of merging its sketches. Rows from before
    # schema 4 hold their count here, which bounds users too.
    Measure("user_events", "integer", Fold.COUNT, "user_id", Fold.SUM, "user_events", 0, shown=False),
    # Distinct users, mergeable across levels and windows.
    Measure("users_sketch", "sketch", Fold.SKETCH, "user_id", Fold.UNION, "users", 0, bounded_by="user_events",
            ranks=True, description="Distinct users; null before users were counted"),
)


def by_column(column: str) -> Measure:
    return next(m for m in MEASURES if m.column == column)


def by_read(name: str) -> Measure:
    """The measure a read calls ``name``; KeyError for none."""
    for measure in MEASURES:
        if measure.read_as == name:
            return measure
    raise KeyError(name)


def shown() -> list[Measure]:
    """The measures a series point shows, in order."""
    return [m for m in MEASURES if m.shown]


def ranking() -> list[Measure]:
    """The measures that rank (``by``), read when asked: an entry added to MEASURES shows up."""
    return [m for m in MEASURES if m.ranks]


def rankings() -> list[str]:
    """What ``by`` may name: the measures that rank."""
    return [m.read_as for m in ranking()]


# The measures top and rising items carry as fields of their own; every other one that ranks comes
# after them (TopItem.measures, a column of the CLI's tables, a field of the API's items).
ITEM_FIELDS = ("count", "users")


def other_rankings() -> list[str]:
    """The measures that rank besides :data:`ITEM_FIELDS`."""
    return [name for name in rankings() if name not in ITEM_FIELDS]


def columns() -> tuple[str, ...]:
    return tuple(m.column for m in MEASURES)
