"""MariaDB 10.6+ and MySQL 8 (InnoDB), through PyMySQL: row locks and ``SKIP LOCKED`` let replicas
share the work as on PostgreSQL; users sketches are folded in trend's process.

Choices that keep trend's answers exact here:

* Text is stored with a binary collation that does not pad (``utf8mb4_nopad_bin`` on MariaDB,
  ``utf8mb4_0900_bin`` on MySQL): MySQL's usual collations fold case and ignore trailing spaces, so
  ``'a' = 'A '`` would merge two keys, and erasing ``Bob`` would erase ``bob``. Binary order is
  code point order, as in Python.
* Writes run at READ COMMITTED, as PostgreSQL's do: a marker's version is read as committed, and
  InnoDB takes no gap locks that would make concurrent ingests deadlock.
* DDL commits implicitly, so the schema lock is a named lock (``GET_LOCK``) held by the session,
  released when its connection goes back to the pool.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Hashable, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Executable,
    LargeBinary,
    Select,
    String,
    Table,
    bindparam,
    column,
    create_engine,
    event,
    literal,
    literal_column,
    null,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.types import TypeDecorator, TypeEngine

from trend.errors import ConfigError, StorageError
from trend.storage.dialects.base import CHUNK, Capabilities, Dialect, Failure, chunked

# Error numbers of a transaction InnoDB undid (a deadlock) or gave up on (a lock wait timeout).
_ABORTED = {1213, 1205}
_DUPLICATE_KEY = 1062
_SCHEMA_LOCK = "trend_schema"
_SCHEMA_LOCK_WAIT_S = 60
_LISTED_INLINE = 1_000
# What SQLAlchemy gathers from the URL into PyMySQL's ssl argument.
_SSL_PARAMETERS = {"ssl_ca", "ssl_key", "ssl_cert", "ssl_capath", "ssl_cipher", "ssl_check_hostname"}


def _mysql() -> ModuleType:
    """SQLAlchemy's MySQL dialect, imported where a database is MariaDB's: a start-up on another backend
    does not pay the 20 ms it takes."""
    from sqlalchemy.dialects import mysql

    return mysql


def _exact_collation(mariadb: bool) -> str:
    """A binary collation that does not pad: MariaDB's and MySQL 8's names for it differ."""
    return "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"


class ExactText(TypeDecorator[str]):
    """Text compared byte for byte, trailing spaces and case included; ``length`` characters at most
    where it is indexed (InnoDB indexes at most 3,072 bytes of a key), else unbounded."""

    impl = String
    cache_ok = True

    def __init__(self, length: int = 0) -> None:
        super().__init__()
        self.length = length

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        collation, mysql = _exact_collation(getattr(dialect, "is_mariadb", False)), _mysql()
        if self.length:
            return cast(TypeEngine[Any], mysql.VARCHAR(self.length, charset="utf8mb4", collation=collation))
        return cast(TypeEngine[Any], mysql.LONGTEXT(charset="utf8mb4", collation=collation))


class LongBytes(TypeDecorator[bytes]):
    """Bytes of any length: a plain BLOB holds 64 kB, and the stored window totals of a long tail more."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        return cast(TypeEngine[Any], _mysql().LONGBLOB())


def _inline(value: Any) -> Any:
    """An expression with its bound values written into its SQL (``version + 1``); a value as it is."""
    if not isinstance(value, ColumnElement):
        return value
    return literal_column(str(value.compile(dialect=_mysql().dialect(), compile_kwargs={"literal_binds": True})))


def _insert_sql(verb: str, table_name: str, columns: Sequence[str]) -> str:
    """``INSERT INTO t (`a`, `key`) VALUES (%s, %s)``: column names quoted, as key is a reserved word."""
    names = ", ".join(f"`{name}`" for name in columns)
    return f"{verb} INTO {table_name} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"


class MariaDBDialect(Dialect):
    name = "mariadb"
    URL_SCHEMES: ClassVar[tuple[str, ...]] = ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql")
    URL_EXAMPLE = "mysql://user@host:port/db"
    SQLALCHEMY_NAMES = ("mysql", "mariadb")
    CAPABILITIES = Capabilities(
        sketches_in_sql=False,
        sketches_in_process=True,
        users_sketches="DataSketches HLL in trend's process (rollups and reads by users fetch sketches)",
    )

    @classmethod
    def driver_url(cls, url: str) -> str:
        # PyMySQL: pure Python, so MariaDB needs no client library or compiler where trend is installed.
        scheme, _, rest = super().driver_url(url).partition("://")
        return f"{scheme.split('+')[0]}+pymysql://{rest}"

    @classmethod
    def column_type(cls, role: str, length: int = 0) -> TypeEngine[Any] | None:
        if role == "blob":
            return LongBytes()
        return ExactText(length) if role in ("key", "text") else None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.collation = _exact_collation(mariadb=True)  # until a connection says which server it is

    def check_url(self, url: URL) -> None:
        if not url.database:
            raise ConfigError("TREND_DATABASE_URL", "names no database: add one after the port, as in "
                                                    "mysql://user@host:3306/trend (trend makes its tables in it)")
        import pymysql  # only to read which parameters its connections take

        known = set(inspect.signature(pymysql.connections.Connection.__init__).parameters) | _SSL_PARAMETERS
        unknown = sorted(set(url.query) - known - {"self"})
        if unknown:
            raise ConfigError("TREND_DATABASE_URL", f"has parameters a MariaDB connection does not take: "
                                                    f"{', '.join(unknown)}")

    def create_engine(self, url: URL, pool_size: int) -> Engine:
        engine = create_engine(url.update_query_dict({"charset": "utf8mb4"}), pool_size=pool_size, max_overflow=10,
                               pool_pre_ping=True, isolation_level="READ COMMITTED")
        self.attach(engine)

        @event.listens_for(engine, "do_connect")
        def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.Error:
                raise  # the server's answer, or no answer: reported as any database error is
            except (OSError, TypeError, ValueError) as exc:  # what the URL asked for cannot be done
                raise ConfigError("TREND_DATABASE_URL", f"cannot be used to connect: {exc}") from exc

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            self.collation = _exact_collation("mariadb" in dbapi_connection.get_server_info().lower())
            with dbapi_connection.cursor() as cursor:
                # Strict: a value that does not fit is an error, never silently cut; the connection's text
                # compares as the columns' does, so a bound key never mixes collations with a column.
                cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
                cursor.execute(f"SET NAMES utf8mb4 COLLATE {self.collation}")
                cursor.execute("SET SESSION time_zone = '+00:00'")

        @event.listens_for(engine, "checkin")
        def _on_checkin(dbapi_connection: Any, record: Any) -> None:
            if record.info.pop("schema_locked", False):  # a session lock would outlive the transaction
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("DO RELEASE_LOCK(%s)", (_SCHEMA_LOCK,))

        return engine

    def reader(self, engine: Engine) -> Engine:
        return engine.execution_options(isolation_level="REPEATABLE READ")

    def prober(self, engine: Engine) -> Engine:
        return engine.execution_options(isolation_level="AUTOCOMMIT")

    def lock_schema(self, conn: Connection) -> None:
        got = conn.exec_driver_sql("SELECT GET_LOCK(%s, %s)", (_SCHEMA_LOCK, _SCHEMA_LOCK_WAIT_S)).scalar()
        if got != 1:
            raise TimeoutError(f"another process held trend's schema lock for {_SCHEMA_LOCK_WAIT_S} s")
        conn.connection.info["schema_locked"] = True  # the pool entry's, which the checkin event sees

    def drop_index(self, conn: Connection, table: str, name: str) -> None:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name} ON {table}")

    def failure(self, error: BaseException, line: str, operational: bool) -> Failure:
        number = error.args[0] if error.args and isinstance(error.args[0], int) else None
        if number in _ABORTED:
            return Failure.ABORTED
        return super().failure(error, line, operational)

    def unwrapped_error(self, error: BaseException) -> bool | None:
        # The bulk paths run on PyMySQL's cursor. Looked up, not imported: an engine of this dialect loaded it.
        pymysql = sys.modules.get("pymysql")
        if pymysql is None or not isinstance(error, pymysql.err.Error):
            return None
        return isinstance(error, pymysql.err.OperationalError)

    def change_stamp(self, conn: Connection) -> Hashable:
        # AUTO_INCREMENT does not follow commit order: every ingest moves the data version "events".
        return conn.exec_driver_sql("SELECT coalesce(sum(version), 0) FROM trend_data_versions").scalar()

    # Upserts: INSERT … ON DUPLICATE KEY UPDATE, which any unique key triggers (trend's tables have one).
    def upsert(self, table: Table, keys: Sequence[str], updates: Mapping[str, Any], **values: Any) -> Executable:
        # Expressions inline: PyMySQL's executemany rewrites the VALUES part and cannot bind the rest.
        inline = {name: _inline(value) for name, value in updates.items()}
        return cast(Executable, _mysql().insert(table).values(**values).on_duplicate_key_update(inline))

    def insert_new(self, table: Table) -> Executable:
        first = next(iter(table.primary_key.columns))
        # A no-op where the row exists.
        return cast(Executable, _mysql().insert(table).on_duplicate_key_update({first.name: first}))

    def set_column(self, conn: Connection, table: Table, keys: Sequence[str], column: str,
                   rows: Sequence[tuple[Any, ...]]) -> None:
        # PyMySQL sends an executemany UPDATE row by row (half of a 1m recompute's time): the values go
        # into a temporary table as multi-row INSERTs instead, and one UPDATE joins it.
        if not rows:
            return
        staged = f"trend_set_{table.name}"
        names = ", ".join(f"`{name}`" for name in keys)
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged} AS SELECT {names}, `{column}` AS item "
                             f"FROM {table.name} WHERE 1 = 0")
        conn.exec_driver_sql(f"DELETE FROM {staged}")
        for part in chunked(rows, CHUNK):
            self.bulk_insert(conn, staged, [*keys, "item"], part)
        joined = " AND ".join(f"t.`{name}` = s.`{name}`" for name in keys)
        conn.exec_driver_sql(f"UPDATE {table.name} AS t JOIN {staged} AS s ON {joined} SET t.`{column}` = s.item")

    def claim(self, query: Select[Any]) -> Select[Any]:
        # Replicas share a backlog: a bucket locked by one runner is passed over by the others.
        return query.with_for_update(skip_locked=True)

    def one_of(self, column: ColumnElement[str], values: Sequence[str]) -> ColumnElement[bool]:
        # The optimizer does not look into JSON_TABLE: IN of a JSON list walked a whole level instead of
        # seeking its index by key (3.9 s against 0.1 s for one key's day at 1m). A plain list it does
        # seek; past a thousand keys the statement would grow with them, and the list is one parameter.
        if len(values) <= _LISTED_INLINE:
            return column.in_(list(values))
        return super().one_of(column, values)

    def listed(self, values: Sequence[str]) -> ColumnElement[str]:
        kind = f"VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE {self.collation}"
        return cast(ColumnElement[str], self._json_rows(values, kind, String()))

    def listed_numbers(self, values: Sequence[int]) -> ColumnElement[int]:
        return cast(ColumnElement[int], self._json_rows(values, "BIGINT", BigInteger()))

    @staticmethod
    def _json_rows(values: Sequence[Any], kind: str, type_: TypeEngine[Any]) -> ColumnElement[Any]:
        """The values as a one-column table, bound as one JSON parameter however many there are."""
        rows = text(f"SELECT value FROM JSON_TABLE(:values, '$[*]' COLUMNS (value {kind} PATH '$')) AS listed")
        rows = rows.bindparams(bindparam("values", json.dumps(list(values)), unique=True))
        return rows.columns(column("value", type_)).subquery().c.value

    # Sketches are folded in trend's process (storage/read/python_sketches.py): the SQL leaves them NULL.
    def sketch_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return null()

    def union_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return null()

    def estimate(self, sketch: ColumnElement[Any]) -> ColumnElement[Any]:
        return literal(0)

    def sketch_type(self) -> TypeEngine[Any]:
        return cast(TypeEngine[Any], _mysql().MEDIUMBLOB())

    def bulk_insert(self, conn: Connection, table_name: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]]) -> None:
        # PyMySQL's executemany sends an INSERT's rows as multi-row statements, up to max_allowed_packet.
        if rows:
            with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
                cursor.executemany(_insert_sql("INSERT", table_name, columns), rows)

    def insert_keyed(self, conn: Connection, table_name: str, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        # Most ids are new: a part goes in as one multi-row INSERT under a savepoint. A part with a
        # repeat is undone and goes in row by row, each INSERT IGNORE saying whether it stored its row;
        # a concurrent writer's uncommitted repeat makes it wait, then count as a duplicate.
        import pymysql  # loaded with the engine: this connection is its

        position = list(columns).index(id_column)
        one_by_one = _insert_sql("INSERT IGNORE", table_name, columns)
        stored: set[str] = set()
        for part in chunked(rows, CHUNK):
            try:
                with conn.begin_nested():
                    self.bulk_insert(conn, table_name, columns, part)
            except pymysql.err.IntegrityError as exc:
                if exc.args[0] != _DUPLICATE_KEY:
                    raise
                with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
                    for row in part:
                        if cursor.execute(one_by_one, row):
                            stored.add(row[position])
                            continue
                        # IGNORE passes over any error: only a duplicate id may have been the reason.
                        cursor.execute("SHOW WARNINGS")
                        codes = {int(found[1]) for found in cursor.fetchall()}
                        if codes != {_DUPLICATE_KEY}:
                            raise StorageError(f"database error: an event was refused (codes {sorted(codes)})") from exc
            else:
                stored.update(row[position] for row in part)
        return stored
