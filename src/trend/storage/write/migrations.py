"""Create the schema on first use, and carry its version so later releases can migrate a file.

``trend_schema`` also records facts about the data that settings must agree with: the key
normalization the stored keys went through, and since when rollup rows carry users sketches.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, inspect, select

from trend.errors import ConfigError, StorageError
from trend.keys import has_invisible, normalizer
from trend.model import RAW
from trend.storage.shared import data_versions
from trend.storage.shared.markers import mark
from trend.storage.shared.schema import (
    BASE_TABLES,
    JOB_RUNS_RUNNING,
    ROLLUP_INDEX,
    SCHEMA_VERSION,
    Sketch,
    alert_rules,
    dimensions,
    fact_events,
    level_table,
    level_tables,
    metadata,
    schema_meta,
)
from trend.storage.shared.tx import Tx
from trend.storage.write.events import COLUMNS, remember_dimensions

USERS_SINCE = "users_since"
KEY_NORMALIZATION = "key_normalization"


def _add_heartbeat(tx: Tx) -> None:
    _add_column(tx, "job_runs", "heartbeat_at", "BIGINT")
    JOB_RUNS_RUNNING.create(tx.conn, checkfirst=True)


def _mark_minutes_with_raw_events(tx: Tx) -> None:
    """Mark every minute that still has raw events, so the runs recompute it (and its parents)."""
    minutes = tx.execute(select(fact_events.c.minute).distinct()).scalars()
    mark(tx, tx.levels.finest.name, (int(minute) for minute in minutes))


def _add_users(tx: Tx) -> None:
    """Give every rollup row a users sketch. Buckets whose raw events are still kept are marked dirty,
    so the runs recompute them with sketches; older ones keep no sketch and read as ``users: null``."""
    sketch = Sketch().compile(dialect=tx.conn.dialect)
    # SQLite's covering rollup index gains user_id, so the sketch is built without a lookup per event.
    tx.dialect.drop_index(tx.conn, "fact_events", "fact_events_rollup")
    ROLLUP_INDEX.create(tx.conn, checkfirst=True)  # only where the index is declared for the backend
    for level in tx.levels:
        if _has_table(tx, level.table):
            _add_column(tx, level.table, "users_sketch", sketch)
    _mark_minutes_with_raw_events(tx)
    oldest_raw = tx.execute(select(func.min(fact_events.c.minute))).scalar()
    if oldest_raw is None:
        finest = level_table(tx.levels.finest)
        newest = tx.execute(select(func.max(finest.c.bucket))).scalar()
        oldest_raw = 0 if newest is None else int(newest) + tx.levels.finest.width
    _put(tx, USERS_SINCE, str(int(oldest_raw)))


def _add_user_events(tx: Tx) -> None:
    """Every rollup row gets ``user_events``. Until a bucket is recomputed it holds the row's count:
    not the exact figure, but never below the row's distinct users, which is all a ranking needs of
    it; buckets whose raw events are kept are marked, so the runs make them exact."""
    for level in tx.levels:
        if _has_table(tx, level.table):
            _add_column(tx, level.table, "user_events", "BIGINT NOT NULL DEFAULT 0")
            table = level_table(level)
            tx.execute(table.update().values(user_events=table.c["count"]))
    _mark_minutes_with_raw_events(tx)


# version N → the step that turns a version N-1 database into version N.
def _add_data_versions(tx: Tx) -> None:
    """Nothing to change: the new table is created with the other new tables below, starting at 0."""


def _version_data_by_day(tx: Tx) -> None:
    """Nothing to change: versions of a level and day start at 0, and kept totals live in processes,
    which start afresh. The version stops runners of schema 5, which would not bump them."""


def _drop_invisible_characters(tx: Tx) -> None:
    """The default normalization now removes characters that show nothing (trend/keys.py): keys and
    segments of raw events that held them take their new form, and their minutes are marked, so the
    runs recompute every level from them. Raw events whose key would be left empty keep it. Rollup rows
    of buckets older than the oldest raw event cannot be recomputed and keep their keys."""
    if _get(tx, KEY_NORMALIZATION) != "nfkc_casefold":
        return
    normalize = normalizer("nfkc_casefold")
    columns = [fact_events.c[name] for name in COLUMNS]
    for field in ("key", "segment"):
        column = fact_events.c[field]
        renamed = {old: new for old in tx.execute(select(column).distinct()).scalars()
                   if has_invisible(old) and (new := normalize(old)) and new != old}
        position = COLUMNS.index(field)
        for old, new in renamed.items():
            rows = [tuple(row) for row in tx.execute(select(*columns).where(column == old))]
            tx.execute(fact_events.delete().where(column == old))
            # A row goes in again as it was, under its new key: its event_id is already known.
            tx.dialect.bulk_insert(tx.conn, "fact_events", COLUMNS,
                                   [(*row[:position], new, *row[position + 1:]) for row in rows])
            mark(tx, tx.levels.finest.name, {int(row[COLUMNS.index("minute")]) for row in rows})
        if renamed:
            data_versions.bump(tx, RAW)
    pairs = tx.execute(select(dimensions.c.event, dimensions.c.segment)).all()
    remember_dimensions(tx, {(row.event, new) for row in pairs
                             if has_invisible(row.segment) and (new := normalize(row.segment))})


def _add_rule_errors(tx: Tx) -> None:
    """Rules record their last failure. (A SQLite database made before keeps its rule ids as they are
    allocated; deleting a rule cancels its pending deliveries, so a reused id reaches no one.)"""
    _add_missing_columns(tx, "alert_rules", (("last_error", "TEXT"), ("last_error_at", "BIGINT")))


def _add_bucket_failures(tx: Tx) -> None:
    """Markers remember a failed recompute: when it may be tried again, how often it failed, and why.
    Rising rules name their score; those made before keep the z-score their thresholds were set for."""
    _add_missing_columns(tx, "rollup_dirty", (("retry_at", "BIGINT"), ("failures", "INTEGER NOT NULL DEFAULT 0"),
                                              ("last_error", "TEXT")))
    if _add_missing_columns(tx, "alert_rules", (("score", "TEXT"),)):
        tx.execute(alert_rules.update().where(alert_rules.c.condition == "rising").values(score="zscore"))


def _add_missing_columns(tx: Tx, table: str, columns: tuple[tuple[str, str], ...]) -> bool:
    """Columns a newer schema added, only where they are missing (a database created at that version
    has them, and may still be walked through the steps from an older number); whether any was."""
    if not _has_table(tx, table):
        return False  # created below, as it is now
    present = {column["name"] for column in inspect(tx.conn).get_columns(table, schema=_own_schema(tx))}
    missing = [(name, kind) for name, kind in columns if name not in present]
    for name, kind in missing:
        _add_column(tx, table, name, kind)
    return bool(missing)


def _add_column(tx: Tx, table: str, name: str, kind: str) -> None:
    """Standard SQL, the same on every backend; ``kind`` is a type and its constraints in the same."""
    tx.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


MIGRATIONS: dict[int, Callable[[Tx], None]] = {2: _add_heartbeat, 3: _add_users, 4: _add_user_events,
                                               5: _add_data_versions, 6: _version_data_by_day,
                                               7: _drop_invisible_characters, 8: _add_rule_errors,
                                               9: _add_bucket_failures}


def _drop_unwanted_key_indexes(tx: Tx) -> None:
    """Databases made before SQLite's finer levels lost their index by key. Not a schema version:
    rows are unchanged, and runners of the last release read them just as well (if slower)."""
    for level in tx.levels:
        if not tx.dialect.caps.has_key_index(level):
            tx.dialect.drop_index(tx.conn, level.table, f"{level.table}_key")


def _own_schema(tx: Tx) -> str | None:
    """The schema trend's tables live in (PostgreSQL: the first of search_path; Database.ensure_schema
    maps table names to it), None where the backend has no schemas."""
    translated: dict[str | None, str] = tx.conn.get_execution_options().get("schema_translate_map") or {}
    return translated.get(None)


def _has_table(tx: Tx, name: str) -> bool:
    """Whether trend's own schema holds the table; another schema on the search path does not count."""
    return bool(inspect(tx.conn).has_table(name, schema=_own_schema(tx)))


def _get(tx: Tx, name: str) -> str | None:
    value = tx.execute(select(schema_meta.c.value).where(schema_meta.c.name == name)).scalar()
    return None if value is None else str(value)


def _put(tx: Tx, name: str, value: str) -> None:
    tx.execute(tx.dialect.upsert(schema_meta, ["name"], {"value": value}, name=name, value=value))


def stored_version(tx: Tx) -> int:
    """The schema version of the database: a runner checks it before each run (rolling upgrades)."""
    value = _get(tx, "version")
    return 0 if value is None else int(value)


def users_since(tx: Tx) -> int:
    """Rollup rows of buckets before this carry no users sketch: their users are unknown. Set only by
    migrations, which run before a process reads: read once per process."""
    if tx.lasting.users_since is None:
        value = _get(tx, USERS_SINCE)
        tx.lasting.users_since = 0 if value is None else int(value)
    return tx.lasting.users_since


def create_or_migrate(tx: Tx, key_normalization: str) -> bool:
    """Create the tables, or migrate them to this release; whether the stored schema changed (a
    migration may mark buckets, which Citus's commit barrier must then cover)."""
    stored = None
    if _has_table(tx, schema_meta.name):
        stored = _get(tx, "version")
    if stored is None:
        metadata.create_all(tx.conn, tables=[*BASE_TABLES, *level_tables(tx.levels)], checkfirst=True)
        tx.dialect.distribute(tx.conn, [level.table for level in tx.levels])
        _put(tx, "version", str(SCHEMA_VERSION))
        _put(tx, KEY_NORMALIZATION, key_normalization)
        _put(tx, USERS_SINCE, "0")
        return True
    version = int(stored)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database has schema version {version}, newer than this trend's {SCHEMA_VERSION}; upgrade trend"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[step](tx)
    # Tables new in this release, or a level added to the hierarchy, are created as they are.
    metadata.create_all(tx.conn, tables=[*BASE_TABLES, *level_tables(tx.levels)], checkfirst=True)
    _drop_unwanted_key_indexes(tx)
    # On Citus: distributes a database that was plain PostgreSQL so far (rows move to the workers).
    tx.dialect.distribute(tx.conn, [level.table for level in tx.levels])
    if version != SCHEMA_VERSION:
        _put(tx, "version", str(SCHEMA_VERSION))
    _check_key_normalization(tx, key_normalization)
    return version != SCHEMA_VERSION


def _check_key_normalization(tx: Tx, wanted: str) -> None:
    """Keys stored under one normalization and queried under another would silently split: refuse."""
    stored = _get(tx, KEY_NORMALIZATION)
    if stored is None:
        # Databases from before the setting existed: their keys stay as they are; new ones are normalized.
        _put(tx, KEY_NORMALIZATION, wanted)
    elif stored != wanted:
        raise ConfigError(
            "TREND_KEY_NORMALIZATION",
            f"the database's keys were stored with {stored!r}, not {wanted!r}. Set TREND_KEY_NORMALIZATION="
            f"{stored} to keep using this database, or start a new one (TREND_DATABASE_URL) and ingest again")
