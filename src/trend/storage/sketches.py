"""HyperLogLog sketches of distinct users, in Python: Apache DataSketches HLL.

SQLite gets them as SQL functions registered on every connection, so the rollup's
``INSERT … SELECT … GROUP BY`` builds and merges sketches exactly as PostgreSQL's ``hll`` does:

* ``trend_hll(user_id) FILTER (WHERE user_id IS NOT NULL)``: aggregate; the sketch of the distinct
  values, NULL if none. The FILTER is part of it: a NULL value is an error (``Dialect.sketch_of``);
* ``trend_hll_union(sketch)``: aggregate; the union of non-NULL sketches, NULL if none;
* ``trend_hll_count(sketch)``: the estimate, rounded; 0 for NULL.

2^14 registers give a relative standard error of 0.8%, and for small counts the sketch keeps the
hashed values themselves (its LIST and SET modes), so counts up to a few hundred are exact.
"""

from __future__ import annotations

import functools
from typing import Any

LG_K = 14


@functools.cache
def _ds() -> Any:
    """DataSketches, loaded when the first sketch is made: with numpy it costs 50-100 ms at start-up,
    which a process that never counts users (a CLI read by count, a client) should not pay."""
    import datasketches

    return datasketches


def load() -> None:
    """Load DataSketches now: a server does it while it starts, so its first read by users does not."""
    _ds()


def _hll_type() -> Any:
    return _ds().tgt_hll_type.HLL_8


class Distinct:
    """A sketch being built: values added one by one, or whole serialized sketches merged in."""

    def __init__(self) -> None:
        # Values go into a plain sketch, a third cheaper per value than a union; sketches into a union.
        self._sketch: Any = None
        self._union: Any = None

    def add(self, value: object) -> None:
        if value is None:
            return
        if self._sketch is None:
            self._sketch = _ds().hll_sketch(LG_K, _hll_type())
        self._sketch.update(str(value))

    def merge(self, blob: bytes | None) -> None:
        if blob is None:
            return
        if self._union is None:
            self._union = _ds().hll_union(LG_K)
        self._union.update(_ds().hll_sketch.deserialize(bytes(blob)))

    def _result(self) -> Any:
        if self._union is None:
            return self._sketch
        if self._sketch is not None:
            self._union.update(self._sketch)
            self._sketch = None
        return self._union.get_result(_hll_type())

    def blob(self) -> bytes | None:
        """The serialized sketch; None when nothing was added."""
        result = self._result()
        return None if result is None else bytes(result.serialize_compact())

    def estimate(self) -> int:
        result = self._result()
        return 0 if result is None else round(result.get_estimate())


class _SketchOf:
    """``trend_hll(value) FILTER (WHERE value IS NOT NULL)``: SQLite makes one per group with a value,
    at its first value, and calls ``step`` per value. ``step`` is the sketch's own C++ ``update``,
    so a value costs no Python frame: the users of a 1M-event minute are most of its rollup's time."""

    def __init__(self) -> None:
        self._sketch = _ds().hll_sketch(LG_K, _hll_type())
        self.step = self._sketch.update

    def finalize(self) -> bytes:
        return bytes(self._sketch.serialize_compact())


class _UnionOf(Distinct):
    """``trend_hll_union(sketch)``."""

    step = Distinct.merge
    finalize = Distinct.blob


def estimate(blob: bytes | None) -> int:
    """The number of distinct users a sketch holds, rounded; 0 for no sketch."""
    return 0 if blob is None else round(_ds().hll_sketch.deserialize(blob).get_estimate())


def register(dbapi_connection: Any) -> None:
    """Make the three functions available on one sqlite3 connection."""
    dbapi_connection.create_aggregate("trend_hll", 1, _SketchOf)
    dbapi_connection.create_aggregate("trend_hll_union", 1, _UnionOf)
    dbapi_connection.create_function("trend_hll_count", 1, estimate, deterministic=True)
