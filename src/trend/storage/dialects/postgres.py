"""PostgreSQL: row locks let replicas share the work; COPY is the bulk path; postgresql-hll sketches
distinct users in the database where the server has it."""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    LargeBinary,
    Select,
    Table,
    Text,
    any_,
    bindparam,
    case,
    create_engine,
    func,
    null,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine, UserDefinedType

from trend.errors import ConfigError, StorageError

if TYPE_CHECKING:
    import psycopg  # loaded with the engine, by SQLAlchemy's driver: never for a SQLite file
    from sqlalchemy.dialects import postgresql
from trend.storage.dialects.base import CHUNK, Capabilities, Dialect, Failure, chunked
from trend.storage.dialects.on_conflict import OnConflictUpserts

# SQLSTATEs of a transaction the database undid to break a deadlock (Citus's distributed deadlock
# detection included) or a serialization conflict.
_ABORTED = {"40P01", "40001"}


class _Hll(UserDefinedType[Any]):
    """postgresql-hll's ``hll`` type."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "hll"


def _array_of(item: type[TypeEngine[Any]]) -> TypeEngine[Any]:
    from sqlalchemy.dialects import postgresql  # loaded with a PostgreSQL engine, not with trend

    return postgresql.ARRAY(item)


class PostgresDialect(OnConflictUpserts, Dialect):
    name = "postgresql"

    URL_SCHEMES: ClassVar[tuple[str, ...]] = ("postgresql", "postgres", "postgresql+psycopg")
    URL_EXAMPLE = "postgresql://user@host:port/db"
    SQLALCHEMY_NAMES = ("postgresql",)
    PARTIAL_INDEXES = True

    @staticmethod
    def insert_of(table: Table) -> postgresql.Insert:
        from sqlalchemy.dialects import postgresql  # loaded with a PostgreSQL engine, not with trend

        return postgresql.insert(table)

    @classmethod
    def driver_url(cls, url: str) -> str:
        # psycopg 3: SQLAlchemy alone would pick psycopg2 for postgresql://.
        scheme, _, rest = super().driver_url(url).partition("://")
        return "postgresql+psycopg://" + rest if scheme in ("postgresql", "postgres") else f"{scheme}://{rest}"
    _STAGING = "trend_ingest_staging"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.hll = str(self.setting("hll", "auto"))  # TREND_HLL: auto, on or off; the choice of sketches
        # TREND_POSTGRES_PREPARED_STATEMENTS: off behind a pooler in transaction mode.
        self.prepared_statements = bool(self.setting("postgres_prepared_statements", True))

    def create_engine(self, url: URL, pool_size: int) -> Engine:
        # psycopg prepares a statement on the server after its fifth run; behind a pooler in transaction
        # mode the next transaction may meet another connection, where it was never prepared.
        options = {} if self.prepared_statements else {"connect_args": {"prepare_threshold": None}}
        engine = create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True, **options)
        self.attach(engine)
        return engine

    # The planner cannot size an hll_add_agg state, so it avoids hashing a GROUP BY that builds
    # sketches and sorts every event of the bucket instead, in parallel, by its text columns: 2.9 s for
    # a 1M-event minute against 0.35 s without sketches (docs/benchmarks.md). Hashing in one process,
    # with room for the states (spilling to disk beyond it), takes about a third of that.
    ROLLUP_SETTINGS: ClassVar[tuple[tuple[str, str], ...]] = (("max_parallel_workers_per_gather", "0"),
                                                              ("work_mem", "64MB"))

    # PostgreSQL 13+: the id taken before COMMIT names the transaction after a crash too, and
    # pg_xact_status reads its fate from the commit log (what a client that lost COMMIT's answer asks).
    def transaction_id(self, conn: Connection) -> str | None:
        return str(conn.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar_one())

    def commit_status(self, conn: Connection, transaction_id: str) -> str | None:
        status = conn.exec_driver_sql("SELECT pg_xact_status(%s::xid8)", (transaction_id,)).scalar_one()
        return None if status is None else str(status)

    def failure(self, error: BaseException, line: str, operational: bool) -> Failure:
        if getattr(error, "sqlstate", None) in _ABORTED:
            return Failure.ABORTED
        return super().failure(error, line, operational)

    def unwrapped_error(self, error: BaseException) -> bool | None:
        # COPY runs on psycopg's connection. Looked up, not imported: an engine of this dialect loaded it.
        psycopg = sys.modules.get("psycopg")
        if psycopg is None or not isinstance(error, psycopg.Error):
            return None
        return isinstance(error, psycopg.OperationalError)

    def before_recompute(self, conn: Connection) -> None:
        for name, value in self.ROLLUP_SETTINGS:
            conn.exec_driver_sql(f"SET LOCAL {name} = '{value}'")

    def has_users(self, conn: Connection, start_minute: int, end_minute: int) -> bool:
        # One walk of the minutes' index entries when none has a user (0.1 s for a 1M-event minute); it
        # stops at the first user otherwise. Worth it: a GROUP BY with hll_add_agg costs twice one without.
        if not self.caps.sketches_in_sql:
            return True  # the sketches are folded in trend's process, from the rows with users only
        return bool(conn.exec_driver_sql(
            "SELECT EXISTS (SELECT 1 FROM fact_events WHERE minute >= %(start)s AND minute < %(end)s "
            "AND user_id IS NOT NULL)", {"start": start_minute, "end": end_minute}).scalar())

    def erased(self, engine: Engine) -> None:
        # Dead rows keep their bytes until VACUUM frees them; VACUUM cannot run in a transaction.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM fact_events, alert_deliveries, alert_fired")

    def change_stamp(self, conn: Connection) -> Hashable:
        # Sequences do not follow commit order here, so the newest seq would not do: every ingest moves
        # the data version "events", every deletion or rewrite of rows another, and versions only grow.
        # On Citus the table is the coordinator's.
        return conn.exec_driver_sql("SELECT coalesce(sum(version), 0) FROM trend_data_versions").scalar()

    def reader(self, engine: Engine) -> Engine:
        return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)

    def prober(self, engine: Engine) -> Engine:
        return engine.execution_options(isolation_level="AUTOCOMMIT")

    def lock_schema(self, conn: Connection) -> None:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7715001)")

    def own_schema(self, conn: Connection) -> str | None:
        # Statements name trend's tables without a schema, so search_path decides which they are, and
        # the commit barrier is keyed by current_schema(): the tables must be the first schema's. With
        # search_path=X,public, X empty and public holding trend's tables, X's writers once used
        # public's tables under X's barrier, which public's runners never wait for: refused.
        current, elsewhere, path, user = conn.exec_driver_sql(
            "SELECT current_schema(), (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass('trend_schema')), current_setting('search_path'), current_user").one()
        if current is None:
            raise ConfigError("TREND_DATABASE_URL", "no schema of its search_path exists: trend makes its tables in "
                                                    "the first one (create it, or name one that exists)")
        first = next((part.strip().strip('"') for part in str(path).split(",") if part.strip()), None)
        if first == "$user" and current == user:
            first = current  # the user's own schema exists, and comes first
        elif first == "$user":
            first = next((part.strip().strip('"') for part in str(path).split(",")[1:] if part.strip()), None)
        if first is not None and first != current:
            # PostgreSQL passes over a schema that does not exist: a misspelt one would put trend's
            # tables in the next, another deployment's or public, without a word.
            raise ConfigError("TREND_DATABASE_URL", f"the first schema of its search_path, {first!r}, does not "
                                                    f"exist (trend would use {current!r}); create it, or fix its name")
        if elsewhere is not None and elsewhere != current:
            raise ConfigError("TREND_DATABASE_URL", f"its search_path reaches trend's tables in schema {elsewhere!r}, "
                                                    f"but its first schema, {current!r}, has none: trend keeps its "
                                                    f"tables and locks in the first schema. Put {elsewhere!r} first "
                                                    f"to use that deployment (options=-csearch_path={elsewhere},...), "
                                                    f"or create trend's tables in {current!r} by starting with "
                                                    f"search_path={current} alone once")
        return str(current)

    def probe(self, conn: Connection) -> Capabilities:
        # The sketch column's type follows: hll, or bytea holding DataSketches' bytes (sketch_type).
        in_sql = self._use_hll(conn)
        return self.caps.but(sketches_in_sql=in_sql, sketches_in_process=not in_sql, users_sketches=(
            "postgresql-hll, in the database" if in_sql else
            "DataSketches HLL in trend's process: the database has no postgresql-hll "
            "(rollups and reads by users fetch sketches instead of merging them in SQL)"))

    def _use_hll(self, conn: Connection) -> bool:
        """Whether sketches are postgresql-hll's: the tables' own type decides once they exist, then TREND_HLL."""
        stored = conn.exec_driver_sql(
            "SELECT udt_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND column_name = 'users_sketch' LIMIT 1").scalar()
        if stored is not None:
            if (stored == "hll" and self.hll == "off") or (stored != "hll" and self.hll == "on"):
                raise ConfigError("TREND_HLL", f"is {self.hll}, but this database already stores its sketches as "
                                               f"{stored}; leave TREND_HLL at auto")
            if stored != "hll":
                return False
        elif self.hll == "off":
            return False
        installed = conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'hll'").first() is not None
        if not installed and not self._create_hll(conn):
            if self.hll == "on" or stored == "hll":
                raise ConfigError("TREND_HLL", "needs the hll extension (postgresql-hll), which this server "
                                               "lacks or this role cannot create: install it (Debian: "
                                               "postgresql-15-hll), or set TREND_HLL=off on a new database")
            return False
        if conn.exec_driver_sql("SELECT to_regtype('hll')").scalar() is None:
            schema = conn.exec_driver_sql(
                "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hll'").scalar()
            raise StorageError(f"the hll extension is installed in schema {schema}, which is not on this "
                               "connection's search_path: add it, e.g. options=-csearch_path=myschema,public")
        return True

    @staticmethod
    def _create_hll(conn: Connection) -> bool:
        """Add postgresql-hll where the server has it; False where it is missing or this role may not."""
        if conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'hll'").first() is None:
            return False
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS hll")
        except DBAPIError:
            return False
        return True

    def one_of(self, column: ColumnElement[str], values: Sequence[str]) -> ColumnElement[bool]:
        # = ANY of an array is hashed (PostgreSQL 14+) and keeps the branch's own plan.
        return column == any_(bindparam(None, list(values), type_=_array_of(Text)))

    def listed(self, values: Sequence[str]) -> ColumnElement[str]:
        return func.unnest(bindparam(None, list(values), type_=_array_of(Text)))

    def listed_numbers(self, values: Sequence[int]) -> ColumnElement[int]:
        return func.unnest(bindparam(None, list(values), type_=_array_of(BigInteger)))

    # postgresql-hll: 2^14 registers of 5 bits, explicit then sparse storage for small counts. Without
    # it, the SQL leaves sketches NULL and storage folds them in Python.
    def sketch_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        if not self.caps.sketches_in_sql:
            return null()
        # FILTER: rows without a user are not hashed at all.
        sketch = func.hll_add_agg(func.hll_hash_text(column), 14, 5, -1, 1).filter(column.is_not(None))
        # hll_add_agg gives an empty sketch over NULLs only; a row without users stores NULL.
        return case((func.count(column) > 0, sketch), else_=null())

    def union_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.hll_union_agg(column) if self.caps.sketches_in_sql else null()

    def estimate(self, sketch: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.coalesce(func.round(func.hll_cardinality(sketch)), 0)

    def sketch_type(self) -> TypeEngine[Any]:
        return _Hll() if self.caps.sketches_in_sql else LargeBinary()

    def estimates(self, conn: Connection, parts: Mapping[str, Sequence[Any]]) -> dict[str, int]:
        if not self.caps.sketches_in_sql:
            return super().estimates(conn, parts)
        # postgresql-hll's sketches came back in their text form; the server merges them again.
        pairs = [(key, sketch) for key, sketches_of_key in parts.items() for sketch in sketches_of_key]
        found = dict.fromkeys(parts, 0)
        if pairs:
            rows = conn.exec_driver_sql(
                "SELECT t.k, round(hll_cardinality(hll_union_agg(t.s::hll))) FROM "
                "unnest(%s::text[], %s::text[]) AS t(k, s) GROUP BY t.k",
                ([key for key, _ in pairs], [sketch for _, sketch in pairs]))
            found.update({key: int(value or 0) for key, value in rows})
        return found

    def bulk_insert(self, conn: Connection, table_name: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        driver_connection = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        with driver_connection.cursor() as cursor, cursor.copy(
            f"COPY {table_name} ({', '.join(columns)}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)

    def insert_keyed(self, conn: Connection, table_name: str, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        # Most ids are new: a part goes straight in by COPY under a savepoint (psycopg makes one inside
        # the open transaction). Only a part with a repeat takes the slower path; the savepoint undoes
        # its COPY. That cost 0.2 s of 0.87 s in a 200,000-event file with 10 % of ids.
        from psycopg.errors import UniqueViolation  # the driver is loaded: this connection is its

        driver_connection = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        position = list(columns).index(id_column)
        stored: set[str] = set()
        for part in chunked(rows, CHUNK):
            try:
                with driver_connection.transaction():
                    self.bulk_insert(conn, table_name, columns, part)
            except UniqueViolation:
                stored.update(self._insert_staged(conn, table_name, columns, part, id_column))
            else:
                stored.update(row[position] for row in part)
        return stored

    def _insert_staged(self, conn: Connection, table_name: str, columns: Sequence[str],
                       rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        # COPY into a per-transaction staging table, then ON CONFLICT DO NOTHING, which makes a concurrent
        # repeat wait for the first writer and then count as a duplicate. In the ids' code point order,
        # as the COPY path writes them (storage/write/events.py), so two writers never wait on each other.
        names = ", ".join(columns)
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {self._STAGING} ON COMMIT DELETE ROWS "
                             f"AS SELECT {names} FROM {table_name} WITH NO DATA")
        self.bulk_insert(conn, self._STAGING, columns, rows)
        stored = set(conn.exec_driver_sql(
            f"INSERT INTO {table_name} ({names}) SELECT {names} FROM {self._STAGING} "
            f"ORDER BY {id_column} COLLATE \"C\" "
            f"ON CONFLICT ({id_column}) WHERE {id_column} IS NOT NULL DO NOTHING RETURNING {id_column}"
        ).scalars())
        conn.exec_driver_sql(f"TRUNCATE {self._STAGING}")
        return stored

    def claim(self, query: Select[Any]) -> Select[Any]:
        # Replicas share a backlog: a bucket locked by one runner is passed over by the others.
        return query.with_for_update(skip_locked=True)

    def code_point_order(self, column: Any) -> Any:
        # PostgreSQL would otherwise sort by the locale's rules.
        return column.collate("C")
