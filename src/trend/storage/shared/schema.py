"""SQLAlchemy Core tables. The public ones are a contract: users query them with plain SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from trend import measures
from trend.model import EVENT_MAX, ID_MAX, KEY_MAX, SEGMENT_MAX, Hierarchy, Level
from trend.storage.dialects import Capabilities, column_type, partial_index, table_options, trend_dialect

# 2: job_runs.heartbeat_at, the lease that tells a live run from a killed one.
# 3: agg_*.users_sketch, and the key normalization recorded in trend_schema.
# 4: agg_*.user_events, the bound that lets a ranking by users skip keys.
# 5: trend_data_versions, which tells a process whether the totals it keeps are still true.
# 6: those versions per level and day ("1h@20405"): runners of schema 5 would bump only the level's.
# 7: keys and segments without invisible characters. 8: alert_rules.last_error and last_error_at.
# 9: rollup_dirty.retry_at, failures and last_error: a bucket whose recompute fails waits, and the
#    others go on; runners of schema 8 would retry it first at every run and stall the level. And
#    alert_rules.score: rising rules made before keep the z-score they were made with.
SCHEMA_VERSION = 9

metadata = MetaData()

# Text compared exactly, as Python compares it, on every backend (some compare text without case).
_TEXT = column_type("text", Text())
# An autoincrement id, in the type each backend gives one (SQLite's must alias the rowid).
_SEQ = column_type("seq", BigInteger())


def _key(length: int) -> TypeEngine[Any]:
    """Text that is indexed and compared exactly, code point by code point: at most ``length``
    characters where a backend must bound what it indexes."""
    return column_type("key", Text(), length)


# Text lengths of indexed columns: keys and segments are stored normalized, within validation's bounds.
_NAME = 64  # levels, jobs, settings, statuses, delivery ids
_PATH = 512  # a file ingest's source: its absolute path

fact_events = Table(
    "fact_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("event_id", _key(ID_MAX), nullable=True),
    Column("ts", BigInteger, nullable=False),
    Column("event", _key(EVENT_MAX), nullable=False),
    Column("segment", _key(SEGMENT_MAX), nullable=False, server_default=text("''")),
    Column("key", _key(KEY_MAX), nullable=False),
    Column("user_id", _TEXT, nullable=True),
    Column("value", Float(precision=53), nullable=False, server_default=text("1")),
    Column("received_at", BigInteger, nullable=False),
    # Stored, so the 1m rollup reads one covering index in GROUP BY order (15x faster than a ts range).
    Column("minute", BigInteger, nullable=False),
)
# Unique only where set: most events carry no id, and a partial index keeps ingest from paying for them.
partial_index(Index("fact_events_event_id", fact_events.c.event_id, unique=True), fact_events.c.event_id.isnot(None))


def _caps(dialect: Dialect) -> Capabilities:
    found = trend_dialect(dialect)
    return found.caps if found is not None else Capabilities()


def _if_covering(ddl: Any, target: Any, bind: Any, tables: Any = None, state: Any = None, *,
                 dialect: Dialect, compiler: Any = None, checkfirst: bool = False) -> bool:
    return _caps(dialect).covering_minute_index


def _if_not_covering(ddl: Any, target: Any, bind: Any, tables: Any = None, state: Any = None, *,
                     dialect: Dialect, compiler: Any = None, checkfirst: bool = False) -> bool:
    return not _caps(dialect).covering_minute_index


# The 1m GROUP BY as one walk of a covering index in group order, user_id last so the users sketch is
# built in the same walk (schema 3); or a plain index of the minute, where that rolls up as fast.
ROLLUP_INDEX = Index("fact_events_rollup_users", fact_events.c.minute, fact_events.c.event, fact_events.c.segment,
                     fact_events.c.key, fact_events.c.value, fact_events.c.user_id).ddl_if(callable_=_if_covering)
Index("fact_events_minute", fact_events.c.minute).ddl_if(callable_=_if_not_covering)


class Sketch(TypeDecorator[Any]):
    """A users sketch, in the column type its backend's dialect gives (``sketch_type``)."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        found = trend_dialect(dialect)
        return dialect.type_descriptor(found.sketch_type() if found is not None else LargeBinary())


_TYPES: dict[str, Any] = {"integer": BigInteger, "real": Float(precision=53), "sketch": Sketch}


def level_table(level: Level) -> Table:
    """``agg_<level>``: one row per (bucket, event, segment, key), one column per measure. Made again
    if the measures are not the ones it was made with (a test adds one)."""
    found = metadata.tables.get(level.table)
    if found is not None and found.info["measures"] is measures.MEASURES:
        return found
    if found is not None:
        metadata.remove(found)
    table = Table(
        level.table,
        metadata,
        Column("bucket", BigInteger, primary_key=True),
        Column("event", _key(EVENT_MAX), primary_key=True),
        Column("segment", _key(SEGMENT_MAX), primary_key=True),
        Column("key", _key(KEY_MAX), primary_key=True),
        # A sketch is NULL where no event of the row has a user; every other measure always has a value.
        *(Column(m.column, _TYPES[m.kind], nullable=m.is_sketch) for m in measures.MEASURES),
        # Clustered by its primary key on SQLite: a range of buckets is read without a lookup per row.
        **table_options("clustered"),
        info={"measures": measures.MEASURES},
    )
    # A series of one key reads a few rows per bucket through this, not every key of every bucket.
    # Key first: a query without a key (top, rising) must not be tempted into it.
    Index(f"{level.table}_key", table.c.key, table.c.event, table.c.bucket).ddl_if(
        callable_=_if_key_index, state=level)
    return table


def _if_key_index(ddl: Any, target: Any, bind: Any, tables: Any = None, state: Any = None, *,
                  dialect: Dialect, compiler: Any = None, checkfirst: bool = False) -> bool:
    return _caps(dialect).has_key_index(state)


def level_tables(levels: Hierarchy) -> list[Table]:
    return [level_table(level) for level in levels]


rollup_dirty = Table(
    "rollup_dirty",
    metadata,
    Column("level", _key(_NAME), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("version", BigInteger, nullable=False),
    # A bucket whose recompute failed (the database refused its rows) is left until retry_at.
    Column("retry_at", BigInteger, nullable=True),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("last_error", _TEXT, nullable=True),
)

# Every (event, segment) pair ever stored: validates query parameters and fills the dashboard's selectors.
dimensions = Table(
    "trend_dimensions",
    metadata,
    Column("event", _key(EVENT_MAX), primary_key=True),
    Column("segment", _key(SEGMENT_MAX), primary_key=True),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("job", _key(_NAME), nullable=False),
    Column("runner", _TEXT, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("outcome", _TEXT, nullable=False),
    Column("buckets", Integer, nullable=False, server_default=text("0")),
    Column("rows", BigInteger, nullable=False, server_default=text("0")),
    Column("error", _TEXT, nullable=True),
    # Bumped while the run works; a 'running' record whose heartbeat is old belongs to a dead process.
    Column("heartbeat_at", BigInteger, nullable=True),
)
Index("job_runs_latest", job_runs.c.job, job_runs.c.id)
# The lease check reads the running records of a job on every run: a few rows, never the history.
JOB_RUNS_RUNNING = partial_index(Index("job_runs_running", job_runs.c.job), job_runs.c.outcome == "running")

# Per level, a number that only grows: bumped in every transaction that rewrites or deletes the
# level's rows (a recompute, retention). Totals a process computed from clean buckets stay true while
# the versions of their levels are unchanged (storage/read/kept.py).
data_versions = Table(
    "trend_data_versions",
    metadata,
    Column("level", _key(_NAME), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# The key totals of the full hours of the windows reads will ask for in the coming hour, written by
# the hourly job (query/prepared.py), so a new process's first read does not sum millions of rows
# (storage/shared/stored_totals.py). ``part`` names the event, measure and spans; ``stamp`` holds the
# data versions the totals were read at, and a read uses them only while its own are the same.
stored_totals = Table(
    "trend_stored_totals",
    metadata,
    Column("part", _key(_NAME), primary_key=True),
    Column("stamp", _TEXT, nullable=False),
    Column("totals", column_type("blob", LargeBinary()), nullable=False),
    Column("made_at", BigInteger, nullable=False),
)

schema_meta = Table(
    "trend_schema",
    metadata,
    Column("name", _key(_NAME), primary_key=True),
    Column("value", _TEXT, nullable=False),
)


# Alert rules, shared by every replica. ``last_minute`` is the minute of the last evaluation (one per
# minute, whichever replica gets there first); ``last_state`` what the next evaluation compares with
# (the keys of the previous top for enters_top, whether the key was over the threshold).
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("name", _TEXT, nullable=False),
    Column("event", _TEXT, nullable=False),
    Column("segment", _TEXT, nullable=True),
    Column("by", _TEXT, nullable=False),
    Column("condition", _TEXT, nullable=False),
    Column("window", _TEXT, nullable=False),
    Column("key", _TEXT, nullable=True),
    Column("min_score", Float(precision=53), nullable=True),
    # How a rising rule scores keys (trend/rising.py); rules made before the choice score as they did.
    Column("score", _TEXT, nullable=True),
    Column("min_count", BigInteger, nullable=True),
    Column("top", Integer, nullable=True),
    Column("threshold", BigInteger, nullable=True),
    Column("url", _TEXT, nullable=False),
    Column("secret", _TEXT, nullable=False),
    Column("cooldown_ms", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_minute", BigInteger, nullable=True),
    Column("last_state", _TEXT, nullable=True),
    # Why the last evaluation failed, and when; cleared by the next one that succeeds.
    Column("last_error", _TEXT, nullable=True),
    Column("last_error_at", BigInteger, nullable=True),
    # Ids are never reused, so nothing meant for a deleted rule can reach a new one.
    **table_options("ids_never_reused"),
)

# When a rule last fired for a key: the cool-down.
alert_fired = Table(
    "alert_fired",
    metadata,
    Column("rule_id", BigInteger, primary_key=True),
    Column("key", _key(KEY_MAX), primary_key=True),
    Column("fired_at", BigInteger, nullable=False),
)

# One row per firing: its id stays the same across retries. ``lease_until`` keeps two processes from
# sending it at once; a process that dies mid-send leaves it to be sent again when the lease ends.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", _key(_NAME), primary_key=True),
    Column("rule_id", BigInteger, nullable=False),
    Column("key", _TEXT, nullable=True),
    Column("body", _TEXT, nullable=False),
    Column("test", Integer, nullable=False, server_default=text("0")),
    Column("created_at", BigInteger, nullable=False),
    Column("status", _key(_NAME), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("lease_until", BigInteger, nullable=True),
    Column("last_status", Integer, nullable=True),  # the receiver's HTTP status, never its body
    Column("last_error", _TEXT, nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
)
Index("alert_deliveries_due", alert_deliveries.c.status, alert_deliveries.c.next_attempt_at)
Index("alert_deliveries_rule", alert_deliveries.c.rule_id, alert_deliveries.c.created_at)

# How far each file ingest got: written in the transaction of every chunk it stores, so after any
# failure it says exactly which lines are stored, and ``trend ingest --resume`` goes on from there.
ingest_progress = Table(
    "trend_ingest_progress",
    metadata,
    Column("source", _key(_PATH), primary_key=True),  # the file's absolute path
    Column("fingerprint", _TEXT, nullable=False),  # of its first bytes: a resume of another file is refused
    Column("line", BigInteger, nullable=False),  # the last line stored
    Column("accepted", BigInteger, nullable=False),
    Column("duplicates", BigInteger, nullable=False),
    Column("rejected", BigInteger, nullable=False),
    Column("finished", Boolean, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Every table but the level tables, which depend on the hierarchy.
BASE_TABLES: tuple[Table, ...] = (fact_events, rollup_dirty, dimensions, job_runs, data_versions, schema_meta,
                                  alert_rules, alert_fired, alert_deliveries, ingest_progress, stored_totals)
