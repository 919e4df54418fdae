"""The database handle: engine from a URL, transactions, and every dialect difference in one place.

SQLite pitfalls handled here (both documented by SQLite and SQLAlchemy):

* pysqlite's own BEGIN handling is switched off and replaced by the documented ``begin`` event
  recipe, so write transactions open with ``BEGIN IMMEDIATE``. A deferred transaction that reads and
  then writes fails with SQLITE_BUSY when another writer committed in between; ``busy_timeout`` does
  not retry that case.
* Reads that must agree run in one explicit transaction, which SQLite makes one snapshot.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from trend.errors import DatabaseUnavailableError, StorageError


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; SQLAlchemy alone would pick psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # In WAL mode NORMAL loses nothing on a process crash; only an OS crash may lose the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("trend_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


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
    """One database, shared by threads. Use :meth:`write` and :meth:`read` for transactions."""

    def __init__(self, url: str, *, pool_size: int = 5, sqlite_busy_timeout_ms: int = 30_000) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                raise StorageError("an in-memory SQLite database cannot be shared; give a file path")
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=10)
            _install_sqlite_pragmas(self.engine, sqlite_busy_timeout_ms)
            self._reader = self._prober = self.engine
        else:
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)
            self._reader = self.engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            self._prober = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._writer = self.engine.execution_options(trend_write=True)
        self._write_turns = FairLock() if self.serialized_writers else None
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def serialized_writers(self) -> bool:
        """SQLite lets one write transaction run at a time (BEGIN IMMEDIATE); PostgreSQL does not."""
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any error."""
        self.ensure_schema()
        if self._write_turns is None:
            with translate_errors(), self._writer.begin() as conn:
                yield conn
            return
        with self._write_turns.hold(), translate_errors(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: one snapshot for every statement inside it."""
        self.ensure_schema()
        with translate_errors(), self._reader.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def probe(self) -> Iterator[Connection]:
        """A connection for a single read statement, which is a snapshot by itself: the cheapest path."""
        self.ensure_schema()
        with translate_errors(), self._prober.connect() as conn:
            yield conn

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                from trend.storage.migrations import create_or_migrate

                with translate_errors(), self._writer.begin() as conn:
                    if self.is_postgres:
                        # Two processes starting at once must not both create tables.
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7715001)")
                    create_or_migrate(conn)
                self._schema_ready = True

    def dispose(self) -> None:
        self.engine.dispose()

    # -- dialect helpers: the only place that asks which database this is --

    def insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that supports ``on_conflict_do_*`` on either backend."""
        return postgresql.insert(table) if self.is_postgres else sqlite.insert(table)

    def bulk_insert(self, conn: Connection, table_name: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]]) -> None:
        """The fastest bulk path each backend has: COPY on PostgreSQL, executemany on SQLite."""
        if not rows:
            return
        if self.is_postgres:
            driver_connection = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
            with driver_connection.cursor() as cursor, cursor.copy(
                f"COPY {table_name} ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({marks})", rows)

    def code_point_order(self, column: Any) -> Any:
        """Order text by code point, as Python does: PostgreSQL would otherwise use the locale's rules."""
        return column.collate("C") if self.is_postgres else column

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        """Let replicas share a backlog; SQLite serializes writers, so it needs nothing."""
        return query.with_for_update(skip_locked=True) if self.is_postgres else query


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors become :class:`StorageError` at the storage boundary."""
    try:
        yield
    except OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            raise DatabaseUnavailableError(f"database unavailable: {_first_line(exc)}") from exc
        raise StorageError(f"database error: {_first_line(exc)}") from exc
    except DBAPIError as exc:
        raise StorageError(f"database error: {_first_line(exc)}") from exc


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
