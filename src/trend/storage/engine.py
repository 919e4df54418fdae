"""The database handle: engine from a URL, and transactions that carry their backend's dialect.

Every difference between backends lives in :mod:`trend.storage.dialects`; this module only asks.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, CursorResult
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from trend.errors import (
    ConfigError,
    DatabaseUnavailableError,
    NodeConnectionLostError,
    StorageError,
    TransactionAbortedError,
)
from trend.logging import get_logger
from trend.model import LEVELS, Hierarchy
from trend.storage.dialects import (
    DIALECTS,
    CitusDialect,
    Dialect,
    PostgresDialect,
    chunked,
    has_citus,
    has_worker_nodes,
    is_distributed,
)
from trend.storage.totals_cache import TotalsCache

__all__ = ["Database", "Tx", "chunked", "normalize_url", "translate_errors"]

log = get_logger("storage")
T = TypeVar("T")
# SQLSTATEs of a transaction the database undid to break a deadlock (Citus's distributed deadlock
# detection included) or a serialization conflict.
_ABORTED = {"40P01", "40001"}
# What Citus says when a connection it keeps from the coordinator to a node fails.
_NODE_CONNECTION = ("failure on connection marked as essential", "connection to the remote node")


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; SQLAlchemy alone would pick psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass(frozen=True)
class Tx:
    """One transaction: the connection, its backend's dialect, and the level hierarchy.

    Storage functions take one of these, never a ``(database, connection)`` pair.
    """

    conn: Connection
    dialect: Dialect
    levels: Hierarchy
    totals: TotalsCache | None = None  # on reads, where the backend allows it
    # Facts read once per transaction and asked for again by later statements (the data versions).
    memo: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)
    # Facts that stay true for the life of the process once read: shared by its read transactions.
    lasting: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)

    def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        return self.conn.execute(statement, parameters)

    def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[Any]:
        return self.conn.exec_driver_sql(statement, parameters)


class FairLock:
    """A first-come, first-served lock.

    SQLite's busy handler sleeps with growing back-off, so a writer that waits behind a run loses
    every race to the run's next bucket transaction and can wait for the whole backlog. Queuing
    writers of one process in arrival order bounds an ingest's wait to one bucket.
    """

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._queue: deque[object] = deque()

    @contextmanager
    def hold(self) -> Iterator[None]:
        ticket = object()
        with self._turns:
            self._queue.append(ticket)
            self._turns.wait_for(lambda: self._queue[0] is ticket)
        try:
            yield
        finally:
            with self._turns:
                self._queue.popleft()
                self._turns.notify_all()


class Database:
    """One database, shared by threads. Use :meth:`write`, :meth:`read` and :meth:`probe` for transactions."""

    def __init__(self, url: str, *, levels: Hierarchy = LEVELS, pool_size: int = 5,
                 sqlite_busy_timeout_ms: int = 30_000, key_normalization: str = "nfkc_casefold",
                 citus: str = "auto", hll: str = "auto") -> None:
        self.url = normalize_url(url)
        self.levels = levels
        self.key_normalization = key_normalization
        self.citus = citus
        parsed = make_url(self.url)
        backend = parsed.get_backend_name()
        if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
            raise StorageError("an in-memory SQLite database cannot be shared; give a file path")
        if backend == "sqlite":
            folder = Path(str(parsed.database)).expanduser().absolute().parent
            if not folder.is_dir():
                # SQLite itself would say only "unable to open database file".
                raise ConfigError("TREND_DATABASE_URL", f"cannot create the SQLite file {parsed.database}: "
                                                        f"the directory {folder} does not exist")
        self.dialect: Dialect = DIALECTS[backend](hll)
        self.engine = self.dialect.create_engine(parsed, pool_size, sqlite_busy_timeout_ms)
        self._reader = self.dialect.reader(self.engine)
        self._prober = self.dialect.prober(self.engine)
        self._writer = self.engine.execution_options(trend_write=True)
        self._write_turns = FairLock() if self.dialect.serialized_writers else None
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._totals = TotalsCache()
        self._lasting: dict[Hashable, Any] = {}

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: committed on success, rolled back on any error."""
        self.ensure_schema()
        with self.write_turn(), translate_errors(), self._writer.begin() as conn:
            yield Tx(conn, self.dialect, self.levels)
            self.dialect.before_commit(conn)
        self.dialect.committed()

    def write_turn(self) -> AbstractContextManager[None]:
        """Where writers are serialized, wait for this process's turn, first come first served."""
        return self._write_turns.hold() if self._write_turns is not None else nullcontext()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one snapshot for every statement inside it."""
        self.ensure_schema()
        with translate_errors(), self._reader.connect() as conn, conn.begin():
            yield Tx(conn, self.dialect, self.levels, self._totals if self.dialect.caches_reads else None,
                     lasting=self._lasting)

    @contextmanager
    def pinned(self) -> Iterator[Pinned]:
        """One connection for the transactions of a bucket written in pieces, which share its
        temporary tables (storage/staged.py)."""
        self.ensure_schema()
        with translate_errors(), self._writer.connect() as conn:
            yield Pinned(self, conn)

    @contextmanager
    def probe(self) -> Iterator[Tx]:
        """A connection for a single read statement, which is a snapshot by itself: the cheapest path."""
        self.ensure_schema()
        with translate_errors(), self._prober.connect() as conn:
            yield Tx(conn, self.dialect, self.levels)

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                from trend.storage.migrations import create_or_migrate

                with translate_errors(), self._writer.begin() as conn:
                    self.dialect.lock_schema(conn)
                    self._choose_citus(conn)
                    self.dialect.prepare(conn)
                    create_or_migrate(Tx(conn, self.dialect, self.levels), self.key_normalization)
                    self.dialect.before_commit(conn)
                self._schema_ready = True

    def _choose_citus(self, conn: Connection) -> None:
        """TREND_CITUS: ``auto`` distributes when the database has the citus extension; ``on`` insists;
        ``off`` keeps plain tables, and refuses tables that are distributed already."""
        if not isinstance(self.dialect, PostgresDialect):
            if self.citus == "on":
                raise ConfigError("TREND_CITUS", "is on, but the database is not PostgreSQL")
            return
        citus = has_citus(conn)
        if self.citus == "off":
            if citus and is_distributed(conn):
                # Plain-table code here would lose event_id uniqueness (Citus enforces only the shard key's).
                raise ConfigError("TREND_CITUS", "is off, but this database's tables are distributed by Citus; "
                                                 "leave TREND_CITUS at auto (or on) for it")
            return
        if citus:
            self.dialect = CitusDialect(self.dialect.hll)
            if not has_worker_nodes(conn):
                log.warning("Citus has no worker nodes: every shard stays on the coordinator, which pays Citus's "
                            "costs and spreads nothing; add one with SELECT citus_add_node(host, port)")
        elif self.citus == "on":
            raise ConfigError("TREND_CITUS", "is on, but the database has no citus extension "
                                             "(CREATE EXTENSION citus, on a server that has Citus installed)")

    def retrying(self, call: Callable[[], T], attempts: int = 3) -> T:
        """``call()``, a whole transaction, again when the database undid it for a passing reason: a
        deadlock or conflict it broke, or a connection to a Citus node that went stale when the node
        restarted. Every pooled session may hold such a connection, so the pool is renewed first."""
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except NodeConnectionLostError:
                if attempt == attempts:
                    raise
                self.engine.dispose()
            except TransactionAbortedError:
                if attempt == attempts:
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.dialect.close()
        self.engine.dispose()


class Pinned:
    """Transactions one after another on one connection (:meth:`Database.pinned`)."""

    def __init__(self, db: Database, conn: Connection) -> None:
        self._db = db
        self._conn = conn

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A snapshot, as :meth:`Database.read` gives, that may also write temporary tables."""
        self._conn.execution_options(trend_write=False)
        with translate_errors(), self._conn.begin():
            yield Tx(self._conn, self._db.dialect, self._db.levels)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction, taking its turn as :meth:`Database.write` does."""
        with self._db.write_turn():
            self._conn.execution_options(trend_write=True)
            with translate_errors(), self._conn.begin():
                yield Tx(self._conn, self._db.dialect, self._db.levels)
                self._db.dialect.before_commit(self._conn)
        self._db.dialect.committed()


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors become :class:`StorageError` at the storage boundary."""
    try:
        yield
    except DBAPIError as exc:
        unavailable = isinstance(exc, OperationalError) and (
            exc.connection_invalidated or "connect" in str(exc.orig).lower())
        raise _translated(exc.orig, _first_line(exc), unavailable) from exc
    # COPY runs on the driver's connection, below SQLAlchemy, so its errors arrive unwrapped.
    except psycopg.Error as exc:
        raise _translated(exc, _first_line_of(exc), isinstance(exc, psycopg.OperationalError)) from exc


def _translated(orig: BaseException | None, line: str, unavailable: bool) -> StorageError:
    if getattr(orig, "sqlstate", None) in _ABORTED:
        return TransactionAbortedError(f"database error: {line}")
    if any(sign in line for sign in _NODE_CONNECTION):
        return NodeConnectionLostError(f"database unavailable: {line}")
    if unavailable:
        return DatabaseUnavailableError(f"database unavailable: {line}")
    return StorageError(f"database error: {line}")


def _first_line(exc: DBAPIError) -> str:
    return _first_line_of(exc.orig) if exc.orig is not None else str(exc)


def _first_line_of(exc: BaseException) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    # Citus says which node failed in the error's context, not in its first line: keep that part.
    context = getattr(getattr(exc, "diag", None), "context", None) or ""
    node = re.search(r"while executing command on (\S+)", context)
    return f"{line} (on node {node.group(1)})" if node and node.group(1) not in line else line

