"""Ingest JSON Lines or CSV from a file: good lines are stored, bad ones reported by line number.

Lines are read and stored in chunks, so a file of any size needs bounded memory. With ``strict``
every chunk goes into one transaction that is rolled back if any line is bad.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from itertools import islice
from typing import IO, Any

from trend.errors import FieldProblem, InputError
from trend.ingest import IngestResult
from trend.model import EventRow
from trend.service import Trend
from trend.validation import EventIn, loads_strict

CHUNK_LINES = 5_000
MAX_REPORTED_ERRORS = 1_000
_FIELDS = set(EventIn.model_fields)
Line = tuple[int, Any]  # (line number, parsed payload or a FieldProblem)


def _jsonl(stream: IO[str]) -> Iterator[Line]:
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            yield number, loads_strict(text)
        except (ValueError, RecursionError) as exc:
            yield number, FieldProblem(number, "", f"not valid JSON: {exc}")


def _csv_value(field: str, text: str) -> Any:
    """CSV cells are text; numbers become numbers, and anything else is left for validation to judge."""
    if field in ("value", "ts"):
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _csv(stream: IO[str]) -> Iterator[Line]:
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    unknown = [name for name in header if name not in _FIELDS]
    if unknown:
        raise InputError(f"line 1: unknown CSV column(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(sorted(_FIELDS))}")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, FieldProblem(reader.line_num, "", f"broken CSV: {exc}")
            continue
        number = reader.line_num
        if not any(cells):
            continue
        if len(cells) != len(header):
            yield number, FieldProblem(number, "", f"expected {len(header)} cells, got {len(cells)}")
            continue
        yield number, {name: _csv_value(name, cell) for name, cell in zip(header, cells, strict=True) if cell != ""}


def read_lines(stream: IO[str], fmt: str) -> Iterator[Line]:
    return _csv(stream) if fmt == "csv" else _jsonl(stream)


def detect_format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def ingest_stream(trend: Trend, stream: IO[str], fmt: str, *, strict: bool = False,
                  on_progress: Callable[[int], None] | None = None) -> IngestResult:
    """Validate and store every line; returns counts and the bad lines (at most 1,000 listed)."""
    result = IngestResult()
    lines = read_lines(stream, fmt)
    validator = trend.ingestor.validator
    if strict:
        _ingest_all_or_nothing(trend, lines, result, on_progress)
        return result
    while chunk := list(islice(lines, CHUNK_LINES)):
        rows = _validate_chunk(chunk, validator.validate, trend.clock.now_ms(), result)
        if rows:
            result.add(trend.ingestor.store(rows))
        if on_progress is not None:
            on_progress(len(chunk))
    return result


class _RollbackRequestedError(Exception):
    """Raised inside the strict transaction to undo it."""


def _ingest_all_or_nothing(trend: Trend, lines: Iterator[Line], result: IngestResult,
                           on_progress: Callable[[int], None] | None) -> None:
    validator = trend.ingestor.validator
    try:
        with trend.ingestor.transaction() as store:
            while chunk := list(islice(lines, CHUNK_LINES)):
                rows = _validate_chunk(chunk, validator.validate, trend.clock.now_ms(), result)
                if rows and not result.rejected:
                    result.add(store(rows))
                if on_progress is not None:
                    on_progress(len(chunk))
            if result.rejected:
                raise _RollbackRequestedError
    except _RollbackRequestedError:
        result.accepted = result.duplicates = 0


def _validate_chunk(chunk: list[Line], validate: Callable[[Any, int, int], EventRow | FieldProblem], now: int,
                    result: IngestResult) -> list[EventRow]:
    rows = []
    for number, payload in chunk:
        outcome = payload if isinstance(payload, FieldProblem) else validate(payload, number, now)
        if isinstance(outcome, FieldProblem):
            result.rejected += 1
            if len(result.errors) < MAX_REPORTED_ERRORS:
                result.errors.append(outcome)
        else:
            rows.append(outcome)
    return rows


def open_text(path: str, stdin: IO[str]) -> IO[str]:
    """The file at ``path`` (``-``: standard input); a path that cannot be read is an InputError naming it."""
    if path == "-":
        return stdin
    try:
        return open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file of events") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
