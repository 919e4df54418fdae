"""Validate and store events: one transaction per batch, markers included (rule 1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from trend.clock import Clock
from trend.errors import EventValidationError, FieldProblem
from trend.model import EventRow
from trend.storage.engine import Database, Tx
from trend.storage.write.events import Inserted, StoredEvent, as_stored, insert_stored
from trend.storage.write.progress import Progress, load_progress, save_progress
from trend.validation import DecodedEvent, EventValidator


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[FieldProblem] = field(default_factory=list)

    def add(self, inserted: Inserted) -> None:
        self.accepted += inserted.accepted
        self.duplicates += inserted.duplicates


@dataclass(frozen=True)
class Transaction:
    """The one transaction of an all-or-nothing ingest."""

    tx: Tx
    clock: Clock

    def store(self, rows: Sequence[StoredEvent]) -> Inserted:
        return insert_stored(self.tx, rows)

    def save_progress(self, progress: Progress) -> None:
        save_progress(self.tx, progress, self.clock.now_ms())


class Ingestor:
    def __init__(self, db: Database, clock: Clock, validator: EventValidator,
                 on_ingest: Callable[[IngestResult], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.validator = validator
        self._on_ingest = on_ingest

    def ingest(self, payloads: Sequence[Any], *, strict: bool = True) -> IngestResult:
        """Store the valid events. ``strict``: one invalid event rejects the batch and stores nothing."""
        rows, problems = self.validator.validate_all(payloads, self.clock.now_ms())
        return self._store_checked(rows, problems, len(payloads), strict)

    def ingest_decoded(self, fields: Sequence[DecodedEvent], *, strict: bool = True) -> IngestResult:
        """:meth:`ingest` for a body ``validation.fast_batch`` already decoded and checked."""
        rows, problems = self.validator.finish_all(fields, self.clock.now_ms())
        return self._store_checked(rows, problems, len(fields), strict)

    def _store_checked(self, rows: list[EventRow], problems: list[FieldProblem], total: int,
                       strict: bool) -> IngestResult:
        if problems and strict:
            self._notify(IngestResult(rejected=total, errors=problems))
            raise EventValidationError(problems)
        result = IngestResult(rejected=len(problems), errors=problems)
        if rows:
            result.add(self.store(rows))
        self._notify(result)
        return result

    def store(self, rows: Sequence[EventRow]) -> Inserted:
        """Store rows that are already valid, atomically."""
        received_at = self.clock.now_ms()
        return self.store_stored([as_stored(row, received_at) for row in rows])

    def store_stored(self, rows: Sequence[StoredEvent]) -> Inserted:
        """``store`` for rows already in their stored form (bulk ingest prepares them in parallel).
        A batch the database undid for a passing reason is stored again: nothing of it remained."""
        return self.store_part(rows, None)[0]

    def store_part(self, rows: Sequence[StoredEvent], progress: Progress | None) -> tuple[Inserted, Progress | None]:
        """Store a part of a file and, in the same transaction, how far the file has got: ``progress``
        as of the end of this part, without its rows, which are added here."""
        def attempt() -> tuple[Inserted, Progress | None]:
            with self.db.write() as tx:
                inserted = insert_stored(tx, rows)
                if progress is None:
                    return inserted, None
                done = replace(progress, accepted=progress.accepted + inserted.accepted,
                               duplicates=progress.duplicates + inserted.duplicates)
                save_progress(tx, done, self.clock.now_ms())
                return inserted, done

        return self.db.retrying(attempt)

    def save_progress(self, progress: Progress) -> None:
        with self.db.write() as tx:
            save_progress(tx, progress, self.clock.now_ms())

    def load_progress(self, source: str) -> Progress | None:
        with self.db.read() as tx:
            return load_progress(tx, source)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Many parts in one transaction: all of them commit, or none (``ingest --strict``)."""
        with self.db.write() as tx:
            yield Transaction(tx, self.clock)

    def _notify(self, result: IngestResult) -> None:
        if self._on_ingest is not None:
            self._on_ingest(result)
