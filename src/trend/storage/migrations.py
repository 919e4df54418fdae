"""Create the schema on first use, and carry its version so later releases can migrate a file."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from trend.errors import StorageError
from trend.storage.engine import Tx
from trend.storage.schema import BASE_TABLES, SCHEMA_VERSION, level_tables, metadata, schema_meta


def _add_heartbeat(tx: Tx) -> None:
    tx.exec_driver_sql("ALTER TABLE job_runs ADD COLUMN heartbeat_at BIGINT")
    tx.exec_driver_sql("CREATE INDEX IF NOT EXISTS job_runs_running ON job_runs (job) WHERE outcome = 'running'")


# version N → the step that turns a version N-1 database into version N.
MIGRATIONS: dict[int, Callable[[Tx], None]] = {2: _add_heartbeat}


def create_or_migrate(tx: Tx) -> int:
    stored = None
    if tx.conn.dialect.has_table(tx.conn, schema_meta.name):
        stored = tx.execute(select(schema_meta.c.value).where(schema_meta.c.name == "version")).scalar()
    if stored is None:
        metadata.create_all(tx.conn, tables=[*BASE_TABLES, *level_tables(tx.levels)], checkfirst=True)
        tx.execute(schema_meta.insert().values(name="version", value=str(SCHEMA_VERSION)))
        return SCHEMA_VERSION
    version = int(stored)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database has schema version {version}, newer than this trend's {SCHEMA_VERSION}; upgrade trend"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[step](tx)
    # Tables new in this release, or a level added to the hierarchy, are created as they are.
    metadata.create_all(tx.conn, tables=[*BASE_TABLES, *level_tables(tx.levels)], checkfirst=True)
    if version != SCHEMA_VERSION:
        tx.execute(schema_meta.update().where(schema_meta.c.name == "version").values(value=str(SCHEMA_VERSION)))
    return SCHEMA_VERSION
