"""One dialect per backend, each registered here: every difference between SQLite, PostgreSQL and
Citus lives in its class (base.py says what every backend provides)."""

from __future__ import annotations

from sqlalchemy import Connection

from trend.errors import ConfigError
from trend.logging import get_logger
from trend.storage.dialects.base import CHUNK, BarrierWaits, Capabilities, Dialect, chunked, trend_dialect
from trend.storage.dialects.citus import CitusDialect, has_citus, has_worker_nodes, is_distributed, local_group
from trend.storage.dialects.postgres import PostgresDialect
from trend.storage.dialects.sqlite import WRITE_POLL_S, SQLiteDialect

__all__ = ["CHUNK", "DIALECTS", "WRITE_POLL_S", "BarrierWaits", "Capabilities", "CitusDialect", "Dialect",
           "PostgresDialect", "SQLiteDialect", "chunked", "for_database", "trend_dialect"]

log = get_logger("storage")

# By SQLAlchemy's backend name; Citus is a PostgreSQL database with the citus extension (for_database).
DIALECTS: dict[str, type[Dialect]] = {"sqlite": SQLiteDialect, "postgresql": PostgresDialect, "citus": CitusDialect}


def for_database(dialect: Dialect, conn: Connection, citus: str, prepared_statements: bool = True) -> Dialect:
    """The dialect the opened database needs. TREND_CITUS: ``auto`` takes Citus's where a PostgreSQL
    database has the extension; ``on`` insists; ``off`` keeps plain tables, and refuses tables that
    are distributed already (plain-table code would not keep event_ids unique there)."""
    if not isinstance(dialect, PostgresDialect):
        if citus == "on":
            raise ConfigError("TREND_CITUS", "is on, but the database is not PostgreSQL")
        return dialect
    found = has_citus(conn)
    if citus == "off":
        if found and is_distributed(conn):
            raise ConfigError("TREND_CITUS", "is off, but this database's tables are distributed by Citus; "
                                             "leave TREND_CITUS at auto (or on) for it")
        return dialect
    if not found:
        if citus == "on":
            raise ConfigError("TREND_CITUS", "is on, but the database has no citus extension "
                                             "(CREATE EXTENSION citus, on a server that has Citus installed)")
        return dialect
    group = local_group(conn)
    if group != 0:
        # Citus syncs its metadata to the workers, so the distributed tables answer there too; but the
        # markers, run records and schema would be made on the worker, where the coordinator's runners
        # never see them: events stored there would never be rolled up.
        raise ConfigError("TREND_DATABASE_URL", f"names a Citus worker node (group {group}), not the "
                                                "coordinator: trend's markers and run records live on the "
                                                "coordinator, where their row locks work; connect to it")
    chosen = DIALECTS["citus"](dialect.hll)
    chosen.prepared_statements = prepared_statements
    if not has_worker_nodes(conn):
        log.warning("Citus has no worker nodes: every shard stays on the coordinator, which pays Citus's costs "
                    "and spreads nothing; add one with SELECT citus_add_node(host, port)")
    return chosen
