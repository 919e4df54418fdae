"""Create the schema on first use, and carry its version so later releases can migrate a file."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, select

from trend.errors import StorageError
from trend.storage.schema import SCHEMA_VERSION, metadata, schema_meta

# version N → the step that turns a version N-1 database into version N.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def create_or_migrate(conn: Connection) -> int:
    metadata.create_all(conn, checkfirst=True)
    stored = conn.execute(select(schema_meta.c.value).where(schema_meta.c.name == "version")).scalar()
    if stored is None:
        conn.execute(schema_meta.insert().values(name="version", value=str(SCHEMA_VERSION)))
        return SCHEMA_VERSION
    version = int(stored)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database has schema version {version}, newer than this trend's {SCHEMA_VERSION}; upgrade trend"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[step](conn)
    if version != SCHEMA_VERSION:
        conn.execute(
            schema_meta.update().where(schema_meta.c.name == "version").values(value=str(SCHEMA_VERSION))
        )
    return SCHEMA_VERSION
