"""One dialect per backend, each registered here: every difference between SQLite, PostgreSQL and
Citus lives in its class (base.py says what every backend provides)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.types import TypeEngine

from trend.errors import ConfigError
from trend.logging import get_logger
from trend.storage.dialects.base import (
    CHUNK,
    BarrierWaits,
    Capabilities,
    Dialect,
    Failure,
    chunked,
    partial_index,
    trend_dialect,
)
from trend.storage.dialects.citus import CitusDialect, has_citus, has_worker_nodes, is_distributed, local_group
from trend.storage.dialects.mariadb import MariaDBDialect
from trend.storage.dialects.postgres import PostgresDialect
from trend.storage.dialects.sqlite import WRITE_POLL_S, SQLiteDialect

__all__ = ["CHUNK", "DIALECTS", "WRITE_POLL_S", "BarrierWaits", "Capabilities", "CitusDialect", "Dialect", "Failure",
           "PostgresDialect", "SQLiteDialect", "chunked", "column_type", "for_database", "for_url", "partial_index",
           "table_options", "trend_dialect"]

log = get_logger("storage")

# By SQLAlchemy's backend name; Citus is a PostgreSQL database with the citus extension (for_database).
DIALECTS: dict[str, type[Dialect]] = {"sqlite": SQLiteDialect, "postgresql": PostgresDialect, "citus": CitusDialect,
                                       "mariadb": MariaDBDialect}


def for_url(url: str) -> type[Dialect]:
    """The dialect a database URL names, by its scheme; a ValueError lists the accepted ones."""
    scheme = url.partition("://")[0].lower()
    for dialect in DIALECTS.values():
        if scheme in dialect.URL_SCHEMES:
            return dialect
    examples = " or ".join(dialect.URL_EXAMPLE for dialect in DIALECTS.values() if dialect.URL_SCHEMES)
    raise ValueError(f"expected {examples}")


# What storage/shared/schema.py asks of every backend at once: its tables are declared before a database is
# opened, so each backend's own type or option is attached under SQLAlchemy's name for that backend.
def column_type(role: str, portable: TypeEngine[Any], length: int = 0) -> TypeEngine[Any]:
    """``portable``, with the variant of each backend that has its own type for ``role`` (Dialect.column_type)."""
    found, named = portable, set()
    for dialect in DIALECTS.values():
        own = dialect.column_type(role, length)
        names = [name for name in dialect.SQLALCHEMY_NAMES if name not in named]  # Citus is PostgreSQL's
        if own is not None and names:
            found = found.with_variant(own, *names)
        named.update(names)
    return found


def table_options(*wanted: str) -> dict[str, Any]:
    """The keyword options of a Table for what it asks ("clustered"), from every backend that has them."""
    options: dict[str, Any] = {}
    for dialect in DIALECTS.values():
        for want in wanted:
            options.update(dialect.TABLE_OPTIONS.get(want, {}))
    return options


def for_database(dialect: Dialect, conn: Connection) -> Dialect:
    """The dialect the opened database needs. TREND_CITUS: ``auto`` takes Citus's where a PostgreSQL
    database has the extension; ``on`` insists; ``off`` keeps plain tables, and refuses tables that
    are distributed already (plain-table code would not keep event_ids unique there)."""
    citus = str(dialect.setting("citus", "auto"))
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
    chosen = DIALECTS["citus"](dialect.options)
    if not has_worker_nodes(conn):
        log.warning("Citus has no worker nodes: every shard stays on the coordinator, which pays Citus's costs "
                    "and spreads nothing; add one with SELECT citus_add_node(host, port)")
    return chosen
