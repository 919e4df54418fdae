"""Citus: PostgreSQL distributed over nodes. Events and rollups are sharded by key and colocated;
the protocol's tables (markers, run records, schema) stay local on the coordinator, where its row
locks work. docs/architecture.md, "Citus", says why each choice holds, and why the commit barrier
closes the two-phase-commit window."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from trend.storage.dialects.base import CHUNK, Capabilities, Failure, chunked
from trend.storage.dialects.postgres import PostgresDialect

# What Citus says when a connection it keeps from the coordinator to a node fails.
_NODE_CONNECTION = ("failure on connection marked as essential", "connection to the remote node")


class CitusDialect(PostgresDialect):
    """PostgreSQL distributed by Citus: events and rollups sharded by key, colocated; the protocol's
    tables (markers, run records, schema) stay local on the coordinator, where its row locks work.

    See docs/architecture.md, "Citus", for why each choice holds.
    """

    name = "citus"
    # Reached by a PostgreSQL URL, and chosen once the database says it has Citus (for_database).
    URL_SCHEMES: ClassVar[tuple[str, ...]] = ()
    _IDS = "trend_event_ids"
    CAPABILITIES = Capabilities(
        distributed=True,
        # The coordinator commits the marker's release before the workers get COMMIT PREPARED for the
        # rows; a read in between would find the bucket clean and read its old rows. Released
        # afterwards, the marker keeps reads on raw events until the rows are visible on every worker.
        release_after_commit=True,
        # A release after commit makes the order of a recompute's effects subtler than one commit: the
        # kept totals are not proved for that, so Citus reads from the database every time.
        caches_reads=False,
        # A bucket's transaction costs Citus a two-phase commit and three statements over every shard,
        # whatever its size: a catch-up recomputes up to this many buckets in one.
        buckets_per_transaction=32,
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        # TREND_CITUS_BARRIER_TIMEOUT: the longest a writer or a run waits at the commit barrier.
        self.barrier_timeout_ms = int(self.setting("citus_barrier_timeout", 5_000))
        self.barrier.timeout_s = self.barrier_timeout_ms / 1000

    def describe(self, error: BaseException) -> str:
        # Citus says which node failed in the error's context, not in its first line: keep that part.
        line = super().describe(error)
        context = getattr(getattr(error, "diag", None), "context", None) or ""
        node = re.search(r"while executing command on (\S+)", context)
        return f"{line} (on node {node.group(1)})" if node and node.group(1) not in line else line

    def failure(self, error: BaseException, line: str, operational: bool) -> Failure:
        if any(sign in line for sign in _NODE_CONNECTION):
            return Failure.NODE_LOST
        return super().failure(error, line, operational)

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
        # Within TREND_CITUS_BARRIER_TIMEOUT: a run queued behind a hung committer costs a writer a
        # retry (503), never a frozen cluster. The setting is the transaction's, and this is its last
        # statement.
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(self.barrier_timeout_ms)}")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({_BARRIER})")

    def before_recompute(self, conn: Connection) -> None:
        # Not PostgreSQL's settings: the GROUP BY runs on the workers, which a SET LOCAL here does not reach.
        self.wait_for_committing_writers(conn)
        self.recover_prepared(conn)

    def wait_for_committing_writers(self, conn: Connection) -> None:
        """The barrier's exclusive side: once it is granted, every writer that could have committed the
        claimed markers on the coordinator has committed its rows on the workers too. Taken and dropped
        at once, so it holds up writers no longer than the wait itself, and given up after
        TREND_CITUS_BARRIER_TIMEOUT (the run fails, its buckets stay marked for the next one): writers
        queue behind a waiting run, so a run must not wait for ever on a committer that hangs."""
        began = time.perf_counter()
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(self.barrier_timeout_ms)}")
        try:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_BARRIER})")
        except DBAPIError:
            self.barrier.waited(time.perf_counter() - began, timed_out=True)
            raise
        self.barrier.waited(time.perf_counter() - began, timed_out=False)
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_BARRIER})")
        conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")

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


def has_citus(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'citus'").first() is not None


def is_distributed(conn: Connection) -> bool:
    """Whether this schema's fact_events is a Citus distributed table."""
    return conn.exec_driver_sql("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass('fact_events')"
                                ).first() is not None


def local_group(conn: Connection) -> int:
    """This node's group: 0 on the coordinator."""
    found = conn.exec_driver_sql("SELECT groupid FROM pg_dist_local_group").scalar()
    return 0 if found is None else int(found)


def has_worker_nodes(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' "
                                "AND isactive").first() is not None
