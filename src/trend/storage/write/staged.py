"""A bucket recomputed in pieces (SQLite): the GROUP BY is staged in a temporary table, outside the
write lock, then copied into the level's table a few thousand rows per write transaction.

SQLite has one write lock for the whole file. Recomputing a 1h bucket of a long tail in one
transaction holds it for hundreds of milliseconds, and every ingest waits that long. Pieces are
safe because the bucket keeps its marker until the last one: reads answer a dirty bucket from the
level below and never look at its half-written rows.

The marker's version is swapped for a token, a number no ingest can reach by counting up from 1,
in a write transaction of its own *before* the rows are staged; the stage's snapshot comes after
it, and every piece checks the token is still there. If an ingest bumped it, or another runner took
the bucket (even one that released it, after which an ingest made it again at version 1), the check
fails and no more pieces are written: the bucket stays dirty, and the runner recomputes it in one
transaction, replacing whatever was written.

The swap must come first. Swapped in the first piece, after a stage that had read version ``v``, it
took a marker another runner had released and a late event had made again at version 1 (= ``v``):
the stale stage was written and the marker released, and the late event was lost for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Column, MetaData, Table, func, literal, literal_column, select, tuple_
from sqlalchemy.schema import CreateTable

from trend.model import Level
from trend.storage.dialects import WRITE_POLL_S
from trend.storage.shared import data_versions
from trend.storage.shared.bucket_sql import grouped, row_columns, source_of
from trend.storage.shared.schema import level_table
from trend.storage.shared.schema import rollup_dirty as dirty
from trend.storage.shared.tx import Tx
from trend.storage.write.rollups import Recomputed

# Rows per write transaction: 3–10 ms of SQLite's write lock at the median, by level and sketch size.
PIECE_ROWS = 2_000
# The write lock stays free this long between two pieces, so a writer of another process, which
# asks for it every WRITE_POLL_S (storage/dialects.py), gets in; this process's writers queue in turn.
PIECE_PAUSE_S = 2 * WRITE_POLL_S

# Insertion order in the temporary table, which is the GROUP BY's order and so the primary key's.
_ROWID: Any = literal_column("rowid")


def _staging(level: Level) -> Table:
    """The temporary table of a level's staged rows: the level's own columns, no keys."""
    return _staging_of(level, tuple(row_columns()))


@cache
def _staging_of(level: Level, columns: tuple[str, ...]) -> Table:
    source = level_table(level)
    return Table(f"staged_{source.name}", MetaData(), *(Column(name, source.c[name].type) for name in columns),
                 schema="temp")


@dataclass(frozen=True)
class Staged:
    """A bucket's rows, computed in one snapshot taken after the marker's version became ``token``,
    and how many rows the bucket held then. The pieces delete the old rows first, then insert the new
    ones."""

    level: Level
    bucket: int
    token: int
    result: Recomputed
    first_rowid: int
    old_rows: int

    @property
    def clearing(self) -> int:
        """Pieces that delete old rows: a 1h bucket's tens of thousands are one long hold too."""
        return -(-self.old_rows // PIECE_ROWS)

    @property
    def pieces(self) -> int:
        return self.clearing + max(1, -(-self.result.rows // PIECE_ROWS))


def stage(tx: Tx, level: Level, bucket: int, token: int) -> Staged:
    """Inside a read transaction on a pinned connection, begun after the marker's version became
    ``token`` (:func:`trend.storage.shared.markers.take`) in a committed transaction: fill its
    temporary table with the bucket's GROUP BY. Writing a temporary table takes no lock on the
    database file."""
    staging = _staging(level)
    tx.execute(CreateTable(staging, if_not_exists=True))
    tx.execute(staging.delete())
    query = grouped(source_of(tx, level), bucket, bucket + level.width, literal(bucket))
    tx.execute(staging.insert().from_select(row_columns(), query))
    rows, events, first = tuple(tx.execute(
        select(func.count(), func.coalesce(func.sum(staging.c["count"]), 0), func.coalesce(func.min(_ROWID), 1))
    ).one())
    table = level_table(level)
    old = tx.execute(select(func.count()).where(table.c.bucket == bucket)).scalar_one()
    return Staged(level, bucket, token, Recomputed(rows=int(rows), events=int(events)), int(first), int(old))


def unstage(tx: Tx, level: Level) -> None:
    tx.execute(_staging(level).delete())


def still_taken(tx: Tx, staged: Staged) -> bool:
    """Whether the marker still holds this run's token: nothing changed the bucket since the stage."""
    found = tx.execute(select(dirty.c.version).where(
        dirty.c.level == staged.level.name, dirty.c.bucket == staged.bucket)).scalar_one_or_none()
    return found == staged.token


def write_piece(tx: Tx, staged: Staged, piece: int) -> None:
    """Piece number ``piece``: delete a share of the bucket's old rows, or copy a share of the staged ones.
    The first and the last piece move the level's data version: reads never use the rows of a bucket
    still marked, and the last piece is where its marker goes."""
    if piece in (0, staged.pieces - 1):
        data_versions.bump(tx, staged.level.name, staged.bucket, staged.bucket + staged.level.width)
    table = level_table(staged.level)
    in_bucket = table.c.bucket == staged.bucket
    if piece < staged.clearing:
        # A range of the primary key (the table has no rowid): up to the share's last key, found by a
        # walk of the index, then one range delete.
        key = (table.c.event, table.c.segment, table.c.key)
        last = tx.execute(select(*key).where(in_bucket).order_by(*key).offset(PIECE_ROWS - 1).limit(1)).first()
        through = [] if last is None else [tuple_(*key) <= tuple_(*(literal(value) for value in last))]
        tx.execute(table.delete().where(in_bucket, *through))
        return
    piece -= staged.clearing
    if piece == 0:
        tx.execute(table.delete().where(in_bucket))  # nothing left, unless the count was off: be sure
    staging = _staging(staged.level)
    start = staged.first_rowid + piece * PIECE_ROWS
    names = row_columns()
    rows = select(*(staging.c[name] for name in names)).where(start <= _ROWID, start + PIECE_ROWS > _ROWID)
    tx.execute(table.insert().from_select(names, rows.order_by(_ROWID)))
