"""SQLite: one file, one writer at a time.

Pitfalls handled here (both documented by SQLite and SQLAlchemy):

* pysqlite's own BEGIN handling is switched off and replaced by the documented ``begin`` event
  recipe, so write transactions open with ``BEGIN IMMEDIATE``. A deferred transaction that reads and
  then writes fails with SQLITE_BUSY when another writer committed in between; ``busy_timeout`` does
  not retry that case.
* Reads that must agree run in one explicit transaction, which SQLite makes one snapshot.
* ``BEGIN IMMEDIATE`` asks for the write lock every half millisecond itself. SQLite's busy handler backs
  off to 100 ms between tries, so a writer in another process slept through the short gaps that a
  rollup written in pieces leaves between them (storage/write/staged.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, cast

from sqlalchemy import ColumnElement, Connection, Engine, Integer, LargeBinary, create_engine, event, func
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.types import TypeEngine

from trend.errors import ConfigError, StorageError
from trend.storage import sketches
from trend.storage.checkpoints import Checkpointer
from trend.storage.dialects.base import CHUNK, Capabilities, Dialect, Failure, chunked
from trend.storage.dialects.on_conflict import OnConflictUpserts

# How often a SQLite writer asks again for the write lock while another connection holds it: each try
# costs about 10 µs of CPU.
WRITE_POLL_S = 0.0005
_STATEMENTS_FAULT = ("no such ", "syntax error", "has no column", "user-defined", "misuse", "duplicate column",
                     "already exists")


class SQLiteDialect(OnConflictUpserts, Dialect):
    name = "sqlite"
    insert_of = staticmethod(sqlite.insert)
    CAPABILITIES = Capabilities(
        serialized_writers=True,
        # Writers are serialized anyway; a second process's run would only queue for the write lock.
        exclusive_runs=True,
        # One write lock for the file: a long tail's 1h bucket in one transaction would hold it too long.
        staged_rollups=True,
        ordered_inserts=True,
        covering_minute_index=True,
        fine_key_index=False,
        users_sketches="DataSketches HLL, as SQL functions registered on each connection",
        sketches_in_process=True,
        in_process=True,
    )

    URL_SCHEMES = ("sqlite", "sqlite+pysqlite")
    URL_EXAMPLE = "sqlite:///PATH"
    SQLALCHEMY_NAMES = ("sqlite",)
    TABLE_OPTIONS: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "clustered": {"sqlite_with_rowid": False}, "ids_never_reused": {"sqlite_autoincrement": True}}
    PARTIAL_INDEXES = True

    @classmethod
    def column_type(cls, role: str, length: int = 0) -> TypeEngine[Any] | None:
        # Only an INTEGER PRIMARY KEY is an alias of the rowid, which is what gives ingest order cheaply.
        return Integer() if role == "seq" else None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        # TREND_SQLITE_BUSY_TIMEOUT_MS: how long a writer waits for the file's write lock.
        self.busy_timeout_ms = int(self.setting("sqlite_busy_timeout_ms", 30_000))
        self._checkpoints: Checkpointer | None = None

    def check_url(self, url: URL) -> None:
        if url.database in (None, "", ":memory:"):
            raise StorageError("an in-memory SQLite database cannot be shared; give a file path")
        folder = Path(str(url.database)).expanduser().absolute().parent
        if not folder.is_dir():
            # SQLite itself would say only "unable to open database file".
            raise ConfigError("TREND_DATABASE_URL", f"cannot create the SQLite file {url.database}: "
                                                    f"the directory {folder} does not exist")

    def create_engine(self, url: URL, pool_size: int) -> Engine:
        busy_timeout_ms = self.busy_timeout_ms
        engine = create_engine(url, pool_size=pool_size, max_overflow=10)
        self.attach(engine)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            sketches.register(dbapi_connection)
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            # In WAL mode NORMAL loses nothing on a process crash; only an OS crash may lose the last commits.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # No commit copies the log into the file, with an fsync, before it returns (storage/checkpoints.py).
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("trend_write", False):
                _begin_immediate(conn, busy_timeout_ms)
            else:
                conn.exec_driver_sql("BEGIN")

        self._checkpoints = Checkpointer(engine)
        return engine

    def failure(self, error: BaseException, line: str, operational: bool) -> Failure:
        # sqlite3 reports these as OperationalError too, though the statement is at fault, not the database.
        if operational and any(sign in line for sign in _STATEMENTS_FAULT):
            return Failure.STATEMENT
        return super().failure(error, line, operational)

    def change_stamp(self, conn: Connection) -> Hashable:
        # One writer at a time: a stored event takes a seq above every earlier one, and every deletion or
        # rewrite of rows moves a data version (storage/shared/data_versions.py).
        return tuple(conn.exec_driver_sql(
            "SELECT (SELECT max(seq) FROM fact_events), (SELECT coalesce(sum(version), 0) FROM trend_data_versions)"
        ).one())

    def committed(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.wrote()

    @contextmanager
    def erasing(self, conn: Connection) -> Iterator[None]:
        # secure_delete overwrites deleted rows and freed pages with zeros as it deletes them; the log
        # still holds older copies of those pages until erased() truncates it.
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
        try:
            yield
        finally:
            conn.exec_driver_sql("PRAGMA secure_delete=OFF")

    def erased(self, engine: Engine) -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()

    def listed(self, values: Sequence[str]) -> ColumnElement[str]:
        return cast(ColumnElement[str], json_values(values))

    def listed_numbers(self, values: Sequence[int]) -> ColumnElement[int]:
        return cast(ColumnElement[int], json_values(values))

    # DataSketches HLL through the functions of storage/sketches.py.
    def sketch_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        # FILTER: SQLite never calls the Python aggregate for a row without a user, nor at all for a
        # group without any (its result is then NULL): anonymous events cost nothing here.
        return func.trend_hll(column).filter(column.is_not(None))

    def union_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.trend_hll_union(column)

    def estimate(self, sketch: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.trend_hll_count(sketch)

    def sketch_type(self) -> TypeEngine[Any]:
        return LargeBinary()

    def bulk_insert(self, conn: Connection, table_name: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            marks = ", ".join("?" * len(columns))
            conn.exec_driver_sql(f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({marks})", rows)

    def insert_keyed(self, conn: Connection, table_name: str, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        # This transaction holds the only write lock, so an id absent now stays absent until commit.
        position = list(columns).index(id_column)
        seen: set[str] = set()
        for part in chunked(rows, 500):
            marks = ", ".join("?" * len(part))
            found = conn.exec_driver_sql(f"SELECT {id_column} FROM {table_name} WHERE {id_column} IN ({marks})",
                                         tuple(row[position] for row in part))
            seen.update(value for (value,) in found)
        fresh = [row for row in rows if row[position] not in seen]
        for part in chunked(fresh, CHUNK):
            self.bulk_insert(conn, table_name, columns, part)
        return {row[position] for row in fresh}


def _begin_immediate(conn: Connection, busy_timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE``, retried every :data:`WRITE_POLL_S` for as long as ``busy_timeout`` allows."""
    driver = conn.connection.dbapi_connection
    assert driver is not None
    driver.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + busy_timeout_ms / 1000
        while time.monotonic() < deadline:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    break
            time.sleep(WRITE_POLL_S)
        # Once more through SQLAlchemy, so a timeout or another error is reported as any driver error is.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        driver.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


def json_values(values: Sequence[Any]) -> ColumnElement[Any]:
    """The values as a one-column table, bound as one JSON parameter however many there are."""
    return func.json_each(json.dumps(list(values))).table_valued("value").c.value
