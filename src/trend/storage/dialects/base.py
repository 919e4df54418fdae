"""What every backend provides, in three roles, and what it can do, in one frozen object.

Storage functions ask their transaction's dialect (``tx.dialect``), never a backend's name:

* :class:`Connector`: the engine, the kinds of transaction, the schema lock, and what runs around a
  commit;
* :class:`Writer`: inserts, bulk paths, the claim of a dirty bucket, and the hooks of a recompute;
* :class:`Vocabulary`: the SQL that differs between backends (lists bound as one parameter,
  collation, users sketches);
* :class:`Capabilities`: the facts that decide between ways of doing the same thing, probed once
  when the database is opened.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Connection, Engine, Executable, Index, Select, Table, bindparam, func, select
from sqlalchemy.engine import URL
from sqlalchemy.types import TypeEngine

from trend.measures import Fold
from trend.model import HOUR_MS, Level
from trend.storage import sketches

# Bounded so a huge batch never builds one enormous statement or parameter list.
CHUNK = 5_000
# Indexes that cover only some rows, with their condition (storage/shared/schema.py). A backend that can
# adds the condition to its own options when it opens a database (Connector.attach): naming it on the
# Index would load the SQLAlchemy dialect of every backend that can, even in a process that uses none.
_PARTIAL_INDEXES: list[tuple[Index, ColumnElement[bool]]] = []


def partial_index(index: Index, where: ColumnElement[bool]) -> Index:
    """``index``, covering only the rows ``where`` selects on the backends that can (PARTIAL_INDEXES)."""
    _PARTIAL_INDEXES.append((index, where))
    return index


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(frozen=True)
class Capabilities:
    """What a backend does, where trend has more than one way of doing something."""

    # Writers take turns (SQLite's single write lock), so a transaction's reads stay true until commit.
    serialized_writers: bool = False
    # A level's run works alone: another process's run of it is skipped, not shared.
    exclusive_runs: bool = False
    # A bucket's rows are staged outside the write lock and written in short pieces (storage/write/staged.py).
    staged_rollups: bool = False
    # Release a bucket's marker only after the transaction that wrote its rows has committed everywhere.
    release_after_commit: bool = False
    # How many dirty buckets of a level one transaction may recompute together: where a transaction
    # has a high fixed cost (Citus's two-phase commit over every shard), a catch-up shares it.
    buckets_per_transaction: int = 1
    # Sketch folds are SQL aggregates; where not, storage folds them in Python (storage/read/python_sketches.py).
    sketches_in_sql: bool = True
    # Sketches are made and merged by DataSketches in trend's process (SQLite's functions are too).
    sketches_in_process: bool = False
    # The database runs in trend's process: a statement costs no round trip to a server.
    in_process: bool = False
    # How distinct users are sketched here, as ``trend status`` says it.
    users_sketches: str = ""
    # Reads keep key totals of clean buckets between requests (storage/read/kept.py).
    caches_reads: bool = True
    # Every stored event gets a seq above every seq committed before it, as long as no event is
    # deleted (SQLite's single writer and rowid); so a read can take just the events since its last.
    ordered_inserts: bool = False
    # The 1m GROUP BY walks one covering index of fact_events in group order (SQLite); elsewhere a plain
    # index of the minute rolls up as fast and keeps COPY twice as fast.
    covering_minute_index: bool = False
    # Levels under an hour have an index by key. Not on SQLite: each bucket's rows land all over a
    # key-first index, which tripled a long-tail catch-up; keyed reads seek the primary key instead.
    fine_key_index: bool = True
    # Events and rollups are spread over the nodes of a cluster (Citus), whose health trend reports.
    distributed: bool = False

    def has_key_index(self, level: Level) -> bool:
        """Whether ``agg_<level>`` has the index by key (storage/shared/schema.py)."""
        return self.fine_key_index or level.width >= HOUR_MS

    def but(self, **changes: Any) -> Capabilities:
        return replace(self, **changes)


class Failure(Enum):
    """What a database error means for the caller (storage/engine.py turns it into a StorageError)."""

    ABORTED = "aborted"  # the database undid the transaction to break a deadlock or conflict: retry it
    NODE_LOST = "node lost"  # a cluster's connection to one of its nodes failed
    UNAVAILABLE = "unavailable"  # not the statement's fault: a lost connection, a timeout, a full disk
    STATEMENT = "statement"  # the statement or its data: never "unavailable"


class Connector(ABC):
    """How trend connects to a backend and brackets its transactions."""

    @abstractmethod
    def create_engine(self, url: URL, pool_size: int) -> Engine:
        """The engine; it also records this dialect on SQLAlchemy's (see :func:`trend_dialect`)."""

    def attach(self, engine: Engine) -> None:
        """Record this dialect on SQLAlchemy's, where schema.py's types and indexes find it."""
        engine.dialect.trend = self  # type: ignore[attr-defined]  # an attribute of ours on SQLAlchemy's dialect

    def check_url(self, url: URL) -> None:
        """Refuse a database URL this backend cannot use, naming the setting."""

    def reader(self, engine: Engine) -> Engine:
        """Connections for reads that must agree: one snapshot per transaction."""
        return engine

    def prober(self, engine: Engine) -> Engine:
        """Connections for a single statement, which is a snapshot by itself."""
        return engine

    def lock_schema(self, conn: Connection) -> None:
        """Keep two processes from creating or migrating tables at once."""

    def own_schema(self, conn: Connection) -> str | None:
        """The schema trend's tables are made and found in, when the backend has schemas; a
        ConfigError when there is none to use."""
        return None

    def probe(self, conn: Connection) -> Capabilities:
        """What this database can do, read once before trend's tables (extensions, for one)."""
        return self.caps

    def drop_index(self, conn: Connection, table: str, name: str) -> None:
        """Drop ``table``'s index ``name`` if it exists."""
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")

    def distribute(self, conn: Connection, level_tables: Sequence[str]) -> None:
        """After the tables are created: spread them over nodes, where the backend does that."""

    def before_commit(self, conn: Connection) -> None:
        """The last statement of every write transaction."""

    def committed(self) -> None:
        """After each write transaction has committed."""

    def transaction_id(self, conn: Connection) -> str | None:
        """The write transaction's id, read just before its COMMIT, where the backend can say later
        whether a transaction committed (:meth:`commit_status`); None where it cannot."""
        return None

    def commit_status(self, conn: Connection, transaction_id: str) -> str | None:
        """"committed", "aborted" or "in progress" for a transaction whose COMMIT lost its connection."""
        return None

    @contextmanager
    def erasing(self, conn: Connection) -> Iterator[None]:
        """Around an erasure's deletes, in its transaction: make them overwrite what they delete."""
        yield

    def erased(self, engine: Engine) -> None:
        """After an erasure committed: leave no readable copy of the deleted rows, where the backend can."""

    def describe(self, error: BaseException) -> str:
        """The driver error's message, as one line for a log or an HTTP answer."""
        return (str(error).strip().splitlines() or [type(error).__name__])[0]

    def failure(self, error: BaseException, line: str, operational: bool) -> Failure:
        """What a driver error means; ``operational``: the driver calls it an OperationalError."""
        return Failure.UNAVAILABLE if operational else Failure.STATEMENT

    def unwrapped_error(self, error: BaseException) -> bool | None:
        """For an error that reached storage without SQLAlchemy's wrapping (a bulk path on the driver's
        own connection): whether the driver calls it operational; None when it is no driver error."""
        return None

    @abstractmethod
    def change_stamp(self, conn: Connection) -> Hashable:
        """A value that changes whenever anything a read could see has changed: equal stamps mean the
        same answers (an HTTP ETag is made of it). It may change when nothing did, never the reverse."""

    def close(self) -> None:
        """When the database is disposed of: stop what the dialect runs in the background."""

    caps: Capabilities


class Writer(ABC):
    """How rows get in, and how runners share the dirty buckets."""

    @abstractmethod
    def upsert(self, table: Table, keys: Sequence[str], updates: Mapping[str, Any], **values: Any) -> Executable:
        """An INSERT of ``values`` (and of the execute parameters) that, where a row with the same
        unique ``keys`` exists, sets ``updates`` on that row instead. Column expressions in ``updates``
        read the existing row (``version + 1``)."""

    @abstractmethod
    def insert_new(self, table: Table) -> Executable:
        """An INSERT that skips the rows whose unique key is stored already."""

    @abstractmethod
    def bulk_insert(self, conn: Connection, table_name: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]]) -> None:
        """The fastest bulk path of the backend."""

    @abstractmethod
    def insert_keyed(self, conn: Connection, table_name: str, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        """Insert the rows whose id is new (ids are unique within ``rows``, and come in their code point
        order, which every backend keeps so that concurrent batches cannot deadlock); returns the ids stored."""

    def claim(self, query: Select[Any]) -> Select[Any]:
        """The claim of a dirty bucket: how concurrent runners keep off each other's rows."""
        return query

    def before_recompute(self, conn: Connection) -> None:
        """Inside a bucket's transaction, after its marker is claimed and before its source is read."""

    def has_users(self, conn: Connection, start_minute: int, end_minute: int) -> bool:
        """Whether a rollup of raw events over [start, end) must build users sketches. True where a
        group without users costs nothing anyway (SQLite's FILTER); a backend where the mere presence of
        the sketch aggregate costs the whole GROUP BY looks."""
        return True

    def set_column(self, conn: Connection, table: Table, keys: Sequence[str], column: str,
                   rows: Sequence[tuple[Any, ...]]) -> None:
        """Set ``column`` of existing rows: each of ``rows`` is the values of ``keys``, then the new value."""
        if not rows:
            return
        names = [*keys, column]
        update = table.update().where(*(table.c[key] == bindparam(f"p_{key}") for key in keys)).values(
            {column: bindparam(f"p_{column}")})
        conn.execute(update, [{f"p_{name}": value for name, value in zip(names, row, strict=True)} for row in rows])

    def forget_event_ids(self, conn: Connection, before_minute: int) -> int:
        """Drop what the backend keeps of event_ids outside fact_events for events older than a minute."""
        return 0


class Vocabulary(ABC):
    """The SQL that differs between backends."""

    @abstractmethod
    def listed(self, values: Sequence[str]) -> ColumnElement[str]:
        """The values as rows of one column, from a single parameter."""

    @abstractmethod
    def listed_numbers(self, values: Sequence[int]) -> ColumnElement[int]:
        """Whole numbers as rows of one column, from a single parameter."""

    @abstractmethod
    def sketch_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Aggregate: a HyperLogLog sketch of the distinct non-NULL values, NULL when there are none."""

    @abstractmethod
    def union_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Aggregate: the union of non-NULL sketches, NULL when there are none."""

    @abstractmethod
    def estimate(self, sketch: ColumnElement[Any]) -> ColumnElement[Any]:
        """The number of distinct values a sketch holds, a whole number; 0 for NULL."""

    @abstractmethod
    def sketch_type(self) -> TypeEngine[Any]:
        """The column type of a stored users sketch."""

    def one_of(self, column: ColumnElement[str], values: Sequence[str]) -> ColumnElement[bool]:
        """``column IN values`` bound as one parameter, so a read never depends on how many keys exist
        (SQLite allows 32,766 parameters per statement, PostgreSQL 65,535)."""
        return column.in_(select(self.listed(values)))

    def code_point_order(self, column: Any) -> Any:
        """Order text by code point, as Python does."""
        return column

    def unindexed(self, column: ColumnElement[int]) -> ColumnElement[int]:
        """``column`` in a form no index serves, so the planner walks the range it is given instead."""
        return column + 0

    def aggregate(self, fold: Fold, column: ColumnElement[Any] | None) -> ColumnElement[Any]:
        """The SQL aggregate for a measure's fold over ``column`` (COUNT: None counts rows)."""
        if fold is Fold.COUNT:
            return func.count() if column is None else func.count(column)
        assert column is not None  # every fold but COUNT reads a column
        if fold is Fold.SUM:
            return func.sum(column)
        if fold is Fold.MIN:
            return func.min(column)
        if fold is Fold.MAX:
            return func.max(column)
        return self.sketch_of(column) if fold is Fold.SKETCH else self.union_of(column)

    def estimates(self, conn: Connection, parts: Mapping[str, Sequence[Any]]) -> dict[str, int]:
        """Per key, the estimate of the union of its sketches as a read returned them (unestimated);
        0 for a key without any. Here DataSketches' bytes, merged in the process."""
        found = {}
        for key, blobs in parts.items():
            if len(blobs) == 1:
                found[key] = sketches.estimate(bytes(blobs[0]))
                continue
            union = sketches.Distinct()
            for blob in blobs:
                union.merge(blob)
            found[key] = union.estimate()
        return found


class Dialect(Connector, Writer, Vocabulary):
    """One backend: every role. Subclasses set ``name`` and ``CAPABILITIES`` and are registered in
    :data:`trend.storage.dialects.DIALECTS`."""

    name: ClassVar[str]
    CAPABILITIES: ClassVar[Capabilities] = Capabilities()
    # The schemes of the database URLs this backend takes (``postgresql+psycopg``), and one example.
    URL_SCHEMES: ClassVar[tuple[str, ...]] = ()
    URL_EXAMPLE: ClassVar[str] = ""
    # SQLAlchemy's names for the backend: its variants of a type, and its keyword options, use them.
    SQLALCHEMY_NAMES: ClassVar[tuple[str, ...]] = ()
    # SQLAlchemy's keyword options for what storage/shared/schema.py asks of a table ("clustered": rows kept in
    # primary key order; "ids_never_reused": an autoincrement id is never handed out twice).
    TABLE_OPTIONS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # An index may cover only the rows a WHERE selects; elsewhere it covers every row.
    PARTIAL_INDEXES: ClassVar[bool] = False

    @classmethod
    def driver_url(cls, url: str) -> str:
        """The URL as SQLAlchemy must see it to load the driver trend uses (schemes are case-blind)."""
        scheme, separator, rest = url.partition("://")
        return scheme.lower() + separator + rest

    @classmethod
    def column_type(cls, role: str, length: int = 0) -> TypeEngine[Any] | None:
        """The backend's own type for a column of ``role``, None for the portable one. "seq": an
        autoincrement id; "key": text that is indexed and compared exactly, at most ``length`` characters;
        "blob": bytes of any length (megabytes)."""
        return None

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        if self.PARTIAL_INDEXES:
            for index, where in _PARTIAL_INDEXES:
                for name in self.SQLALCHEMY_NAMES:
                    index.dialect_options[name]["where"] = where

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        # The settings, by name (trend/config.py): each backend reads its own, such as "hll".
        self.options: Mapping[str, Any] = dict(options or {})
        # The class's capabilities until the database is probed (Database.ensure_schema).
        self.caps = self.CAPABILITIES
        self.barrier = BarrierWaits()

    def setting(self, name: str, default: Any) -> Any:
        """A setting this backend reads, or its default where none was given (a Database made directly)."""
        value = self.options.get(name)
        return default if value is None else value


class BarrierWaits:
    """How long runs waited at a commit barrier in this process, and how often a wait timed out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waits = 0
        self.longest_s = 0.0
        self.timeouts = 0
        self.timeout_s = 0.0  # the longest a wait may last, where the backend has a barrier

    def waited(self, seconds: float, timed_out: bool) -> None:
        with self._lock:
            self.waits += 1
            self.longest_s = max(self.longest_s, seconds)
            self.timeouts += timed_out


def trend_dialect(sqlalchemy_dialect: Any) -> Dialect | None:
    """trend's dialect of an engine, from SQLAlchemy's (schema.py's types and indexes ask it)."""
    found = getattr(sqlalchemy_dialect, "trend", None)
    return found if isinstance(found, Dialect) else None
