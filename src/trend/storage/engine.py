"""The database handle: engine from a URL, and transactions that carry their backend's dialect.

Every difference between backends lives in :mod:`trend.storage.dialects`; this module only asks.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from trend.errors import (
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    NodeConnectionLostError,
    StorageError,
    TransactionAbortedError,
)
from trend.model import LEVELS, Hierarchy
from trend.storage.dialects import DIALECTS, Dialect, chunked, for_database
from trend.storage.migrations import create_or_migrate
from trend.storage.read_cache import ReadCache
from trend.storage.tx import Lasting, Tx

__all__ = ["Database", "Tx", "chunked", "normalize_url", "translate_errors"]

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


# How long a write whose COMMIT lost its connection asks the database what became of it.
COMMIT_CHECK_SECONDS = 30.0
COMMIT_CHECK_PAUSE_S = 0.2


class Database:
    """One database, shared by threads. Use :meth:`write`, :meth:`read` and :meth:`probe` for transactions."""

    def __init__(self, url: str, *, levels: Hierarchy = LEVELS, pool_size: int = 5,
                 sqlite_busy_timeout_ms: int = 30_000, key_normalization: str = "nfkc_casefold",
                 citus: str = "auto", hll: str = "auto", citus_barrier_timeout_ms: int = 5_000,
                 prepared_statements: bool = True) -> None:
        self.url = normalize_url(url)
        self.levels = levels
        self.key_normalization = key_normalization
        self.citus = citus
        self._barrier_timeout_ms = citus_barrier_timeout_ms
        parsed = make_url(self.url)
        self.dialect: Dialect = DIALECTS[parsed.get_backend_name()](hll)
        self.dialect.check_url(parsed)
        self.dialect.prepared_statements = prepared_statements
        self.engine = self.dialect.create_engine(parsed, pool_size, sqlite_busy_timeout_ms)
        self._reader = self.dialect.reader(self.engine)
        self._prober = self.dialect.prober(self.engine)
        self._writer = self.engine.execution_options(trend_write=True)
        self._write_turns = FairLock() if self.dialect.caps.serialized_writers else None
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._cache = ReadCache()
        self._lasting = Lasting()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: committed on success, rolled back on any error.

        A connection lost during COMMIT leaves its outcome unknown to the client, though the database
        knows it: where the backend can tell (:meth:`Dialect.commit_status`), it is asked, so a batch
        that was stored is reported stored, and one that was not is a plain DatabaseUnavailableError.
        """
        self.ensure_schema()
        transaction_id: str | None = None
        with self.write_turn(), translate_errors():
            try:
                with self._writer.begin() as conn:
                    yield Tx(conn, self.dialect, self.levels)
                    self.dialect.before_commit(conn)
                    transaction_id = self.dialect.transaction_id(conn)
            except OperationalError:
                # Failed before COMMIT was sent (no id yet), or COMMIT failed and the database says the
                # transaction was rolled back: the error as it is (a retry may follow; nothing was stored).
                if transaction_id is None or not self._committed_after_all(transaction_id):
                    raise
        self.dialect.committed()

    def _committed_after_all(self, transaction_id: str) -> bool:
        """Whether a transaction whose COMMIT failed committed after all; CommitOutcomeUnknownError if
        the database could not be asked within COMMIT_CHECK_SECONDS (a crashed server is back in
        seconds, once its recovery has settled every transaction)."""
        deadline = time.monotonic() + COMMIT_CHECK_SECONDS
        while True:
            status: str | None = None
            try:
                with self._prober.connect() as conn:
                    status = self.dialect.commit_status(conn, transaction_id)
            except DBAPIError:
                pass  # still unreachable, or still recovering
            if status in ("committed", "aborted"):
                return status == "committed"
            if time.monotonic() >= deadline:
                raise CommitOutcomeUnknownError(
                    "the database connection was lost while committing and the database could not be asked whether "
                    f"it committed within {COMMIT_CHECK_SECONDS:.0f} s: the batch may be stored; send it again "
                    "only with event_id set on every event")
            time.sleep(COMMIT_CHECK_PAUSE_S)

    def write_turn(self) -> AbstractContextManager[None]:
        """Where writers are serialized, wait for this process's turn, first come first served."""
        return self._write_turns.hold() if self._write_turns is not None else nullcontext()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one snapshot for every statement inside it."""
        self.ensure_schema()
        with translate_errors(), self._reader.connect() as conn, conn.begin():
            yield Tx(conn, self.dialect, self.levels, self._cache if self.dialect.caps.caches_reads else None,
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

    def ping(self) -> None:
        """One round trip on a probe connection; a StorageError when the database does not answer."""
        with self.probe() as tx:
            tx.conn.exec_driver_sql("SELECT 1")

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                with translate_errors(), self._writer.begin() as conn:
                    self.dialect.lock_schema(conn)
                    self._open(conn)
                    own = self.dialect.own_schema(conn)
                    if own is not None:  # tables looked up and made in that schema, whatever else the path holds
                        conn.execution_options(schema_translate_map={None: own})
                    if create_or_migrate(Tx(conn, self.dialect, self.levels), self.key_normalization):
                        # Only a change takes Citus's commit barrier: a start-up that changes nothing must not
                        # queue behind a run waiting for a hung committer.
                        self.dialect.before_commit(conn)
                self._schema_ready = True

    def _open(self, conn: Connection) -> None:
        """The dialect this database needs (Citus's, where it has the extension: TREND_CITUS), and
        what the database can do, probed once."""
        self.dialect = for_database(self.dialect, conn, self.citus, self.dialect.prepared_statements)
        self.dialect.barrier_timeout_ms = self._barrier_timeout_ms
        self.dialect.attach(self.engine)
        self.dialect.caps = self.dialect.probe(conn)

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
        # OperationalError is the driver's "not your statement's fault": a lost connection, a lock
        # or busy timeout, a full disk. Anything else (bad data, a constraint) is never "unavailable".
        line = _first_line(exc)
        raise _translated(exc.orig, line, isinstance(exc, OperationalError) and not _statements_fault(line)) from exc
    # COPY runs on the driver's connection, below SQLAlchemy, so its errors arrive unwrapped. psycopg
    # is looked up, not imported: only a PostgreSQL engine loads it, and only it can raise its errors.
    except Exception as exc:
        psycopg = sys.modules.get("psycopg")
        if psycopg is None or not isinstance(exc, psycopg.Error):
            raise
        raise _translated(exc, _first_line_of(exc), isinstance(exc, psycopg.OperationalError)) from exc


# sqlite3 reports these as OperationalError too, though the statement is at fault, not the database.
_STATEMENTS_FAULT = ("no such ", "syntax error", "has no column", "user-defined", "misuse", "duplicate column",
                     "already exists")


def _statements_fault(line: str) -> bool:
    return any(sign in line for sign in _STATEMENTS_FAULT)


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

