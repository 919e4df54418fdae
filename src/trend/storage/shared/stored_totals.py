"""``trend_stored_totals``: every key's total over the full hours of a window, written by the hourly
job for the windows reads will ask for in the coming hour, and read by a process that has not kept
them yet (a new replica, a CLI call), so its first ``top`` reads one row instead of every hour's rows.

A part is named by what it sums: the event, segment, measure and spans (a digest, so any event name
fits the key). Its stamp holds the data versions of the levels and days it read, as the snapshot
that summed it saw them; a read uses it only when its own snapshot sees the same versions, so a
stored part is exactly what the read would have summed (storage/shared/data_versions.py).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import delete, select

from trend.model import Span
from trend.storage.shared.schema import stored_totals
from trend.storage.shared.tx import Tx

Stamp = tuple[tuple[str, int], ...]


def part_name(event: str, segment: str | None, measure: str, spans: Sequence[Span]) -> str:
    identity = [event, segment, measure, [[span.source, span.start, span.end, span.settled] for span in spans]]
    return hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode()).hexdigest()


def _stamp_text(stamp: Stamp) -> str:
    return json.dumps(stamp, separators=(",", ":"))


def stored_stamps(tx: Tx) -> dict[str, str]:
    """Every stored part's stamp, read once per transaction: a few hundred short rows, so a read that
    misses asks for a part's totals only when they are there and current."""
    if tx.memo.stored is None:
        rows = tx.execute(select(stored_totals.c.part, stored_totals.c.stamp))
        tx.memo.stored = {row.part: row.stamp for row in rows}
    return tx.memo.stored


def load(tx: Tx, part: str, stamp: Stamp) -> dict[str, int] | None:
    """The stored totals of ``part`` if they were summed at ``stamp``, else None."""
    if stored_stamps(tx).get(part) != _stamp_text(stamp):
        return None
    # The same snapshot as the stamps: the row is still the one whose stamp matched.
    blob = tx.execute(select(stored_totals.c.totals).where(stored_totals.c.part == part)).scalar_one()
    keys, totals = json.loads(zlib.decompress(bytes(blob)))
    return dict(zip(keys, totals, strict=True))


def current(tx: Tx, wanted: Mapping[str, Stamp]) -> set[str]:
    """Those of ``wanted`` (part → stamp now) that are stored at that stamp."""
    stored = stored_stamps(tx)
    return {part for part, stamp in wanted.items() if stored.get(part) == _stamp_text(stamp)}


def save(tx: Tx, made: Iterable[tuple[str, Stamp, Mapping[str, int]]], now: int) -> None:
    for part, stamp, totals in made:
        row = {"stamp": _stamp_text(stamp), "made_at": now, "totals": zlib.compress(
            json.dumps([list(totals), list(totals.values())], separators=(",", ":")).encode(), 1)}
        tx.execute(tx.dialect.upsert(stored_totals, ["part"], row, part=part, **row))


def keep_only(tx: Tx, parts: Iterable[str]) -> None:
    """Delete every stored part but ``parts``: the windows of an hour ago are never asked for again."""
    wanted = list(parts)
    query = delete(stored_totals)
    if wanted:
        query = query.where(stored_totals.c.part.not_in(wanted))
    tx.execute(query)
