"""One object per backend: every difference between SQLite and PostgreSQL lives in its class.

SQLite pitfalls handled here (both documented by SQLite and SQLAlchemy):

* pysqlite's own BEGIN handling is switched off and replaced by the documented ``begin`` event
  recipe, so write transactions open with ``BEGIN IMMEDIATE``. A deferred transaction that reads and
  then writes fails with SQLITE_BUSY when another writer committed in between; ``busy_timeout`` does
  not retry that case.
* Reads that must agree run in one explicit transaction, which SQLite makes one snapshot.
* ``BEGIN IMMEDIATE`` asks for the write lock every half millisecond itself. SQLite's busy handler backs
  off to 100 ms between tries, so a writer in another process slept through the short gaps that a
  rollup written in pieces leaves between them (storage/staged.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, cast

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    Text,
    any_,
    bindparam,
    case,
    create_engine,
    event,
    func,
    null,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from trend.errors import ConfigError, StorageError
from trend.measures import Fold
from trend.storage import sketches
from trend.storage.checkpoints import Checkpointer

# Bounded so a huge batch never builds one enormous statement or parameter list.
CHUNK = 5_000
# How often a SQLite writer asks again for the write lock while another connection holds it: each try
# costs about 10 µs of CPU.
WRITE_POLL_S = 0.0005


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Dialect:
    """What every backend provides. Storage functions ask their transaction's dialect, never a name."""

    name: ClassVar[str]
    # Events and rollups are spread over the nodes of a cluster (Citus), whose health trend reports.
    distributed: ClassVar[bool] = False
    # Writers take turns (SQLite's single write lock), so a transaction's reads stay true until commit.
    serialized_writers: ClassVar[bool] = False
    # A level's run works alone: another process's run of it is skipped, not shared.
    exclusive_runs: ClassVar[bool] = False
    # Release a bucket's marker only after the transaction that wrote its rows has committed everywhere.
    release_after_commit: ClassVar[bool] = False
    # A bucket's rows are staged outside the write lock and written in short pieces (storage/staged.py).
    staged_rollups: bool = False
    # Sketch folds are SQL aggregates; where not, storage folds them in Python (storage/python_sketches.py).
    sketches_in_sql: bool = True
    # How distinct users are sketched here, as ``trend status`` says it.
    users_sketches: str = ""
    # Reads keep key totals of clean buckets between requests (storage/totals_cache.py).
    caches_reads: ClassVar[bool] = True
    # Every stored event gets a seq above every seq committed before it, as long as no event is
    # deleted (SQLite's single writer and rowid); so a read can take just the events since its last.
    ordered_inserts: ClassVar[bool] = False
    # How many dirty buckets of a level one transaction may recompute together: where each
    # transaction has a high fixed cost (Citus's two-phase commit over every shard), a catch-up
    # shares it among several buckets.
    buckets_per_transaction: ClassVar[int] = 1

    def __init__(self, hll: str = "auto") -> None:
        self.hll = hll  # TREND_HLL: auto, on or off; PostgreSQL's choice of sketches

    def create_engine(self, url: URL, pool_size: int, busy_timeout_ms: int) -> Engine:
        raise NotImplementedError

    def reader(self, engine: Engine) -> Engine:
        """Connections for reads that must agree: one snapshot per transaction."""
        return engine

    def prober(self, engine: Engine) -> Engine:
        """Connections for a single statement, which is a snapshot by itself."""
        return engine

    def lock_schema(self, conn: Connection) -> None:
        """Keep two processes from creating or migrating tables at once."""

    def prepare(self, conn: Connection) -> None:
        """Whatever the database needs before trend's tables: extensions, for one."""

    def distribute(self, conn: Connection, level_tables: Sequence[str]) -> None:
        """After the tables are created: spread them over nodes, where the backend does that."""

    def before_recompute(self, conn: Connection) -> None:
        """Inside a bucket's transaction, after its marker is claimed and before its source is read."""

    def before_commit(self, conn: Connection) -> None:
        """The last statement of every write transaction."""

    def committed(self) -> None:
        """After each write transaction has committed."""

    def close(self) -> None:
        """When the database is disposed of: stop what the dialect runs in the background."""

    def forget_event_ids(self, conn: Connection, before_minute: int) -> int:
        """Drop what the backend keeps of event_ids outside fact_events for events older than a minute."""
        return 0

    def insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that supports ``on_conflict_do_*``."""
        raise NotImplementedError

    def bulk_insert(self, conn: Connection, table_name: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]]) -> None:
        """The fastest bulk path of the backend."""
        raise NotImplementedError

    def insert_keyed(self, conn: Connection, table_name: str, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        """Insert the rows whose id is new (ids are unique within ``rows``, and come in their code point
        order, which every backend keeps so that concurrent batches cannot deadlock); returns the ids stored."""
        raise NotImplementedError

    def claim(self, query: Select[Any]) -> Select[Any]:
        """The claim of a dirty bucket: how concurrent runners keep off each other's rows."""
        return query

    def code_point_order(self, column: Any) -> Any:
        """Order text by code point, as Python does."""
        return column

    def one_of(self, column: ColumnElement[str], values: Sequence[str]) -> ColumnElement[bool]:
        """``column IN values`` bound as one parameter, so a read never depends on how many keys exist
        (SQLite allows 32,766 parameters per statement, PostgreSQL 65,535)."""
        return column.in_(select(self.listed(values)))

    def listed(self, values: Sequence[str]) -> ColumnElement[str]:
        """The values as rows of one column, from a single parameter."""
        raise NotImplementedError

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

    def sketch_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Aggregate: a HyperLogLog sketch of the distinct non-NULL values, NULL when there are none."""
        raise NotImplementedError

    def union_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Aggregate: the union of non-NULL sketches, NULL when there are none."""
        raise NotImplementedError

    def estimate(self, sketch: ColumnElement[Any]) -> ColumnElement[Any]:
        """The number of distinct values a sketch holds, a whole number; 0 for NULL."""
        raise NotImplementedError

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


class SQLiteDialect(Dialect):
    name = "sqlite"
    ordered_inserts = True
    users_sketches = "DataSketches HLL, as SQL functions registered on each connection"
    serialized_writers = True
    # Writers are serialized anyway; a second process's run would only queue for the write lock.
    exclusive_runs = True
    # One write lock for the file: a long tail's 1h bucket in one transaction would hold it too long.
    staged_rollups = True

    def __init__(self, hll: str = "auto") -> None:
        super().__init__(hll)
        self._checkpoints: Checkpointer | None = None

    def create_engine(self, url: URL, pool_size: int, busy_timeout_ms: int) -> Engine:
        engine = create_engine(url, pool_size=pool_size, max_overflow=10)

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

    def committed(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.wrote()

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()

    def listed(self, values: Sequence[str]) -> ColumnElement[str]:
        return cast(ColumnElement[str], json_values(values))

    def insert(self, table: Any) -> sqlite.Insert:
        return sqlite.insert(table)

    # DataSketches HLL through the functions of storage/sketches.py.
    def sketch_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.trend_hll(column)

    def union_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.trend_hll_union(column)

    def estimate(self, sketch: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.trend_hll_count(sketch)

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


class PostgresDialect(Dialect):
    name = "postgresql"
    _STAGING = "trend_ingest_staging"

    def create_engine(self, url: URL, pool_size: int, busy_timeout_ms: int) -> Engine:
        return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)

    def reader(self, engine: Engine) -> Engine:
        return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)

    def prober(self, engine: Engine) -> Engine:
        return engine.execution_options(isolation_level="AUTOCOMMIT")

    def lock_schema(self, conn: Connection) -> None:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7715001)")

    def prepare(self, conn: Connection) -> None:
        self.sketches_in_sql = self._use_hll(conn)
        # The sketch column's type follows: hll, or bytea holding DataSketches' bytes (storage/schema.py).
        conn.dialect.trend_hll = self.sketches_in_sql  # type: ignore[attr-defined]
        self.users_sketches = ("postgresql-hll, in the database" if self.sketches_in_sql else
                               "DataSketches HLL in trend's process: the database has no postgresql-hll "
                               "(rollups and reads by users fetch sketches instead of merging them in SQL)")

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
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(Text)))

    def listed(self, values: Sequence[str]) -> ColumnElement[str]:
        return func.unnest(bindparam(None, list(values), type_=postgresql.ARRAY(Text)))

    def insert(self, table: Any) -> postgresql.Insert:
        return postgresql.insert(table)

    # postgresql-hll: 2^14 registers of 5 bits, explicit then sparse storage for small counts. Without
    # it, the SQL leaves sketches NULL and storage folds them in Python.
    def sketch_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        if not self.sketches_in_sql:
            return null()
        sketch = func.hll_add_agg(func.hll_hash_text(column), 14, 5, -1, 1)
        # hll_add_agg gives an empty sketch over NULLs only; a row without users stores NULL.
        return case((func.count(column) > 0, sketch), else_=null())

    def union_of(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.hll_union_agg(column) if self.sketches_in_sql else null()

    def estimate(self, sketch: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.coalesce(func.round(func.hll_cardinality(sketch)), 0)

    def estimates(self, conn: Connection, parts: Mapping[str, Sequence[Any]]) -> dict[str, int]:
        if not self.sketches_in_sql:
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
        driver_connection = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        position = list(columns).index(id_column)
        stored: set[str] = set()
        for part in chunked(rows, CHUNK):
            try:
                with driver_connection.transaction():
                    self.bulk_insert(conn, table_name, columns, part)
            except psycopg.errors.UniqueViolation:
                stored.update(self._insert_staged(conn, table_name, columns, part, id_column))
            else:
                stored.update(row[position] for row in part)
        return stored

    def _insert_staged(self, conn: Connection, table_name: str, columns: Sequence[str],
                       rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        # COPY into a per-transaction staging table, then ON CONFLICT DO NOTHING, which makes a concurrent
        # repeat wait for the first writer and then count as a duplicate. In the ids' code point order,
        # as the COPY path writes them (storage/events.py), so two writers never wait on each other.
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





class CitusDialect(PostgresDialect):
    """PostgreSQL distributed by Citus: events and rollups sharded by key, colocated; the protocol's
    tables (markers, run records, schema) stay local on the coordinator, where its row locks work.

    See docs/architecture.md, "Citus", for why each choice holds.
    """

    name = "citus"
    distributed = True
    _IDS = "trend_event_ids"
    # The coordinator commits the marker's release before the workers get COMMIT PREPARED for the
    # rows; a read in between would find the bucket clean and read its old rows. Released afterwards,
    # the marker keeps reads on raw events until the rows are visible on every worker.
    release_after_commit = True

    # A release after commit (above) makes the order of a recompute's effects subtler than one commit:
    # the totals cache is not proved for that, so Citus reads from the database every time.
    caches_reads = False

    # A bucket's transaction costs Citus a two-phase commit and three statements over every shard,
    # whatever its size: a catch-up recomputes up to this many buckets in one.
    buckets_per_transaction = 32

    def distribute(self, conn: Connection, level_tables: Sequence[str]) -> None:
        """Turn freshly created tables into distributed ones; a no-op when they already are."""
        done = conn.exec_driver_sql(
            "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'fact_events'::regclass").first()
        if done is not None:
            return
        # Citus enforces a unique index only when it holds the distribution column: the key joins the
        # primary key, and event_ids get a table of their own, distributed by the id itself.
        conn.exec_driver_sql("ALTER TABLE fact_events DROP CONSTRAINT fact_events_pkey")
        conn.exec_driver_sql("ALTER TABLE fact_events ADD PRIMARY KEY (seq, key)")
        conn.exec_driver_sql("DROP INDEX IF EXISTS fact_events_event_id")
        # The minute lets retention forget ids together with their raw events.
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {self._IDS} (event_id text PRIMARY KEY, minute bigint)")
        # A database that was plain PostgreSQL brings its ids along, so their repeats stay duplicates.
        conn.exec_driver_sql(f"INSERT INTO {self._IDS} (event_id, minute) SELECT event_id, minute FROM fact_events "
                             "WHERE event_id IS NOT NULL ON CONFLICT DO NOTHING")
        conn.exec_driver_sql("SELECT create_distributed_table('fact_events', 'key')")
        for table in level_tables:
            conn.exec_driver_sql(f"SELECT create_distributed_table('{table}', 'key', colocate_with => 'fact_events')")
        conn.exec_driver_sql(f"SELECT create_distributed_table('{self._IDS}', 'event_id')")

    def insert_keyed(self, conn: Connection, table_name: str, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]], id_column: str) -> set[str]:
        # The id table's primary key is its shard key, so Citus enforces it: a concurrent repeat waits
        # for the first writer, then finds the id taken. Only the rows whose id this insert claimed go on.
        position, minute = list(columns).index(id_column), list(columns).index("minute")
        stored: set[str] = set()
        for part in chunked(rows, 1_000):
            marks = ", ".join(["(%s, %s)"] * len(part))
            claimed = conn.exec_driver_sql(
                f"INSERT INTO {self._IDS} (event_id, minute) VALUES {marks} ON CONFLICT DO NOTHING RETURNING event_id",
                tuple(value for row in part for value in (row[position], row[minute])))
            stored.update(claimed.scalars())
        fresh = [row for row in rows if row[position] in stored]
        for part in chunked(fresh, CHUNK):
            self.bulk_insert(conn, table_name, columns, part)
        return stored

    def forget_event_ids(self, conn: Connection, before_minute: int) -> int:
        return int(conn.exec_driver_sql(f"DELETE FROM {self._IDS} WHERE minute < %s", (before_minute,)).rowcount)

    def before_commit(self, conn: Connection) -> None:
        # The commit barrier's shared side (docs/architecture.md, "The two-phase-commit window"). Taken
        # last, so the transaction waits for nothing once it holds it. PostgreSQL releases locks after
        # the commit callbacks, where Citus sends COMMIT PREPARED: until then, a run's barrier waits.
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({_BARRIER})")

    def before_recompute(self, conn: Connection) -> None:
        self.wait_for_committing_writers(conn)
        self.recover_prepared(conn)

    @staticmethod
    def wait_for_committing_writers(conn: Connection) -> None:
        """The barrier's exclusive side: once it is granted, every writer that could have committed the
        claimed markers on the coordinator has committed its rows on the workers too. Taken and dropped
        at once, so it holds up writers no longer than the wait itself."""
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({_BARRIER})")
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_BARRIER})")

    @staticmethod
    def recover_prepared(conn: Connection) -> None:
        """A writer whose COMMIT PREPARED failed (a worker lost at that moment) has let go of its lock
        with its rows still prepared: recovery commits them, as its coordinator transaction did. On a
        connection of its own: recovery holds a lock of Citus until its transaction ends, and inside the
        bucket's transaction it would make every other runner's recovery wait for that commit."""
        with conn.engine.connect() as other:
            other.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "SELECT recover_prepared_transactions()")


# The commit barrier: one advisory lock per schema, so deployments in other schemas of the same
# database do not wait for each other. 7715002: trend's class of advisory locks (7715001 is the schema lock).
_BARRIER = "7715002, hashtext(current_schema())"


DIALECTS: dict[str, type[Dialect]] = {"sqlite": SQLiteDialect, "postgresql": PostgresDialect}


def json_values(values: Sequence[Any]) -> ColumnElement[Any]:
    """SQLite: the values as a one-column table, bound as one JSON parameter however many there are."""
    return func.json_each(json.dumps(list(values))).table_valued("value").c.value


def has_citus(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'citus'").first() is not None


def is_distributed(conn: Connection) -> bool:
    """Whether this schema's fact_events is a Citus distributed table."""
    return conn.exec_driver_sql("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass('fact_events')"
                                ).first() is not None


def has_worker_nodes(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' "
                                "AND isactive").first() is not None
