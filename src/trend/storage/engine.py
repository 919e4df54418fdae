"""The database handle: engine from a URL, and transactions that carry their backend's dialect.

Every difference between backends lives in :mod:`trend.storage.dialects`; this module only asks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from trend.errors import (
    CommitOutcomeUnknownError,
    ConfigError,
    DatabaseUnavailableError,
    NodeConnectionLostError,
    StorageError,
    TransactionAbortedError,
)
from trend.model import LEVELS, Hierarchy
from trend.storage import sketches
from trend.storage.dialects import Dialect, Failure, chunked, for_database, for_url
from trend.storage.shared.read_cache import ReadCache
from trend.storage.shared.tx import Lasting, Tx
from trend.storage.write.migrations import create_or_migrate

__all__ = ["Database", "Tx", "chunked", "translate_errors"]

T = TypeVar("T")


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
                 key_normalization: str = "nfkc_casefold", options: Mapping[str, Any] | None = None) -> None:
        """``options``: the settings by name (trend/config.py), of which the backend's dialect reads its own."""
        try:
            chosen = for_url(url)
        except ValueError as exc:
            raise ConfigError("TREND_DATABASE_URL", str(exc)) from None
        self.url = chosen.driver_url(url)
        self.levels = levels
        self.key_normalization = key_normalization
        parsed = make_url(self.url)
        self.dialect: Dialect = chosen(options)
        self.dialect.check_url(parsed)
        self.engine = self.dialect.create_engine(parsed, pool_size)
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
        with self.write_turn(), translate_errors(self):
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
        with translate_errors(self), self._reader.connect() as conn, conn.begin():
            yield Tx(conn, self.dialect, self.levels, self._cache if self.dialect.caps.caches_reads else None,
                     lasting=self._lasting)

    @contextmanager
    def pinned(self) -> Iterator[Pinned]:
        """One connection for the transactions of a bucket written in pieces, which share its
        temporary tables (storage/write/staged.py)."""
        self.ensure_schema()
        with translate_errors(self), self._writer.connect() as conn:
            yield Pinned(self, conn)

    @contextmanager
    def probe(self) -> Iterator[Tx]:
        """A connection for a single read statement, which is a snapshot by itself: the cheapest path."""
        self.ensure_schema()
        with translate_errors(self), self._prober.connect() as conn:
            yield Tx(conn, self.dialect, self.levels)

    def ping(self) -> None:
        """One round trip on a probe connection; a StorageError when the database does not answer."""
        with self.probe() as tx:
            tx.conn.exec_driver_sql("SELECT 1")

    def warm_up(self) -> None:
        """The schema, and DataSketches where sketches are made in this process (50-100 ms with numpy):
        a server does this while it starts, so its first read by users costs what the next one does."""
        self.ensure_schema()
        if self.dialect.caps.sketches_in_process:
            sketches.load()

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                with translate_errors(self), self._writer.begin() as conn:
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
        self.dialect = for_database(self.dialect, conn)
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
        with translate_errors(self._db), self._conn.begin():
            yield Tx(self._conn, self._db.dialect, self._db.levels)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction, taking its turn as :meth:`Database.write` does."""
        with self._db.write_turn():
            self._conn.execution_options(trend_write=True)
            with translate_errors(self._db), self._conn.begin():
                yield Tx(self._conn, self._db.dialect, self._db.levels)
                self._db.dialect.before_commit(self._conn)
        self._db.dialect.committed()


@contextmanager
def translate_errors(db: Database) -> Iterator[None]:
    """Driver errors become :class:`StorageError` at the storage boundary, as the database's dialect
    (asked when the error arrives: it may have changed once the database was opened) reads them."""
    try:
        yield
    except DBAPIError as exc:
        # OperationalError is the driver's "not your statement's fault": a lost connection, a lock
        # or busy timeout, a full disk. Anything else (bad data, a constraint) is never "unavailable".
        error = exc.orig if exc.orig is not None else exc
        raise _translated(db.dialect, error, isinstance(exc, OperationalError)) from exc
    # A bulk path may run on the driver's connection, below SQLAlchemy, so its errors arrive unwrapped.
    except Exception as exc:
        operational = db.dialect.unwrapped_error(exc)
        if operational is None:
            raise
        raise _translated(db.dialect, exc, operational) from exc


_ERRORS: dict[Failure, type[StorageError]] = {
    Failure.ABORTED: TransactionAbortedError, Failure.NODE_LOST: NodeConnectionLostError,
    Failure.UNAVAILABLE: DatabaseUnavailableError, Failure.STATEMENT: StorageError}


def _translated(dialect: Dialect, error: BaseException, operational: bool) -> StorageError:
    line = dialect.describe(error)
    failure = dialect.failure(error, line, operational)
    prefix = "database error" if failure in (Failure.ABORTED, Failure.STATEMENT) else "database unavailable"
    return _ERRORS[failure](f"{prefix}: {line}")
