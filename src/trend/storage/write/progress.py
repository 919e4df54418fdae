"""How far a file ingest got (``trend_ingest_progress``): one row per file, rewritten in the
transaction of every chunk it stores, so it is exactly what is stored."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from trend.storage.shared.schema import ingest_progress
from trend.storage.shared.tx import Tx


@dataclass(frozen=True)
class Progress:
    source: str
    fingerprint: str
    line: int  # the last line stored; 0 before the first
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    finished: bool = False


def load_progress(tx: Tx, source: str) -> Progress | None:
    row = tx.execute(select(ingest_progress).where(ingest_progress.c.source == source)).first()
    if row is None:
        return None
    return Progress(row.source, row.fingerprint, int(row.line), int(row.accepted), int(row.duplicates),
                    int(row.rejected), bool(row.finished))


def save_progress(tx: Tx, progress: Progress, now_ms: int) -> None:
    values = {"fingerprint": progress.fingerprint, "line": progress.line, "accepted": progress.accepted,
              "duplicates": progress.duplicates, "rejected": progress.rejected, "finished": progress.finished,
              "updated_at": now_ms}
    tx.execute(tx.dialect.upsert(ingest_progress, ["source"], values, source=progress.source, **values))
