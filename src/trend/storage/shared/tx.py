"""A transaction as storage functions see it: the connection, its backend's dialect, the level
hierarchy, and what the transaction (or the process) has already read."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, CursorResult

from trend.model import Hierarchy
from trend.storage.dialects import Dialect
from trend.storage.shared.read_cache import ReadCache

# The markers of every level in [start, end) of a read, by level: (bucket, version), in bucket order.
SeenMarkers = tuple[int, int, dict[str, list[tuple[int, int]]]]


@dataclass
class ReadMemo:
    """Facts one read transaction has read and asks for again: its snapshot cannot change them."""

    versions: dict[str, int] = field(default_factory=dict)  # data versions (storage/shared/data_versions.py)
    markers: SeenMarkers | None = None  # of markers.markers_between
    newest_seq: int | None = None  # the newest event's seq
    stamps: dict[Hashable, Hashable] = field(default_factory=dict)  # what kept totals are checked against
    stored: dict[str, str] | None = None  # the stored totals' parts and their stamps (stored_totals.py)
    source: Any = None  # the read's TotalsSource, composed once (storage/read/reads.py)


@dataclass
class Lasting:
    """Facts that stay true for the life of the process once read: shared by its read transactions."""

    users_since: int | None = None  # set only by migrations, which run before any read
    events: set[str] = field(default_factory=set)  # event types seen: they are only ever added


@dataclass(frozen=True)
class Tx:
    """One transaction. Storage functions take one of these, never a ``(database, connection)`` pair."""

    conn: Connection
    dialect: Dialect
    levels: Hierarchy
    cache: ReadCache | None = None  # on reads, where the backend keeps totals between them
    memo: ReadMemo = field(default_factory=ReadMemo, compare=False, repr=False)
    lasting: Lasting = field(default_factory=Lasting, compare=False, repr=False)

    def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        return self.conn.execute(statement, parameters)

    def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[Any]:
        return self.conn.exec_driver_sql(statement, parameters)
