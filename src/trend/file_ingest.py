"""Ingest JSON Lines or CSV from a file: good lines are stored, bad ones reported by line number.

Lines are read and stored in chunks, so a file of any size needs bounded memory. With ``strict``
every chunk goes into one transaction that is rolled back if any line is bad.
"""

from __future__ import annotations

import csv
import ctypes
import gc
import hashlib
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from multiprocessing.connection import Connection
from typing import IO, Any

from trend.clock import Clock
from trend.errors import FieldProblem, InputError, StorageError
from trend.ingest import IngestResult
from trend.model import EventRow
from trend.service import Trend
from trend.storage.write.events import StoredEvent, as_stored
from trend.storage.write.progress import Progress
from trend.validation import NOT_UTF8, EventIn, EventValidator, split_outcomes

CHUNK_LINES = 5_000
MAX_REPORTED_ERRORS = 1_000
# Allocations between two young-generation collections in the reading child (Python's default: 700).
_CHILD_GC_THRESHOLD = 100_000
_FIELDS = set(EventIn.model_fields)
# A resumed file must begin with the same bytes as the one ingested before under its name.
_FINGERPRINT_BYTES = 65_536
_PR_SET_PDEATHSIG = 1  # prctl(2)
# (line number, what it holds): a line of JSON text still to decode, a CSV row's dict, or a FieldProblem.
Line = tuple[int, str | dict[str, Any] | FieldProblem]


def _jsonl(stream: IO[str]) -> Iterator[Line]:
    # The text itself: validation decodes it (EventValidator.validate_line).
    for number, text in enumerate(stream, start=1):
        if text.strip():
            yield number, text


def _csv_value(field: str, text: str) -> Any:
    """CSV cells are text; numbers become numbers, and anything else is left for validation to judge."""
    if field in ("value", "ts"):
        try:
            return float(text)
        except ValueError:
            return text
    return text


# One CSV record per line: a field is quoted ("a ""b"" c", no line breaks inside) or holds no quote at
# all. A stray quote would otherwise become part of a key, and an unterminated one would swallow the
# good lines after it into one record that fails at the end of the file.
_CSV_FIELD = r'(?:"(?:[^"\r\n]|"")*"|[^,"\r\n]*)'
_CSV_RECORD = re.compile(rf"{_CSV_FIELD}(?:,{_CSV_FIELD})*")


def _csv_cells(text: str) -> list[str] | None:
    """The cells of one CSV line, or None when it breaks the rule above."""
    record = text.rstrip("\r\n")
    if not _CSV_RECORD.fullmatch(record):
        return None
    return next(csv.reader([record], strict=True))


def _csv(stream: IO[str]) -> Iterator[Line]:
    lines = enumerate(stream, start=1)
    first = next(lines, None)
    if first is None:
        return  # an empty input stores nothing, and says so
    header = _header(first[1])
    unknown = [name for name in header if name not in _FIELDS]
    if unknown:
        raise InputError(f"line 1: unknown CSV column(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(sorted(_FIELDS))}")
    for number, text in lines:
        if not _is_utf8(text):
            yield number, FieldProblem(number, "", NOT_UTF8)
            continue
        cells = _csv_cells(text)
        if cells is None:
            yield number, FieldProblem(number, "", 'broken CSV: a quote must open and close a whole field on '
                                                   'its line ("a ""b""" for a quote inside one)')
            continue
        if not any(cells):
            continue
        if len(cells) != len(header):
            yield number, FieldProblem(number, "", f"expected {len(header)} cells, got {len(cells)}")
            continue
        yield number, {name: _csv_value(name, cell) for name, cell in zip(header, cells, strict=True) if cell != ""}


def _header(text: str) -> list[str]:
    """The first line's column names; an InputError saying what the input is when it is no CSV header
    (standard input is taken for CSV whenever its first line is not a JSON object)."""
    if text.startswith(("\udcff\udcfe", "\udcfe\udcff")):
        raise InputError("line 1: the text is UTF-16; trend reads UTF-8 (iconv -f UTF-16 -t UTF-8 converts it)")
    if not _is_utf8(text):
        raise InputError(f"line 1: {NOT_UTF8}, so neither a JSON object nor a CSV header")
    if text.lstrip().startswith("["):
        raise InputError("line 1: a JSON array; trend ingest reads JSON Lines, one object per line "
                         "(jq -c '.[]' turns an array into them)")
    cells = _csv_cells(text)
    if cells is None:
        raise InputError("line 1: neither a JSON object (JSON Lines start with {) nor a CSV header")
    return cells


def _is_utf8(text: str) -> bool:
    """Files are read with ``surrogateescape``: bytes that are not UTF-8 become lone surrogates, so a
    bad line is reported by its number instead of ending the whole ingest."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def read_lines(stream: IO[str], fmt: str) -> Iterator[Line]:
    return _csv(stream) if fmt == "csv" else _jsonl(stream)


def detect_format(path: str, fmt: str, stream: IO[str] | None = None) -> str:
    """``--format``, or from the file's name; standard input has none, so its first line tells: JSON
    Lines begin with ``{``, a CSV header does not."""
    if fmt != "auto":
        return fmt
    if path == "-" and stream is not None and hasattr(stream, "buffer"):
        head = stream.buffer.peek(1024)[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
        return "jsonl" if not head or head.startswith(b"{") else "csv"
    return "csv" if path.lower().endswith(".csv") else "jsonl"


@dataclass(frozen=True)
class _Chunk:
    """One chunk of lines, validated: the good ones in their stored form, the bad ones as problems."""

    rows: list[StoredEvent]
    problems: list[FieldProblem]
    lines: int
    last_line: int


def _chunks(stream: IO[str], fmt: str, validator: EventValidator, clock: Clock, after_line: int) -> Iterator[_Chunk]:
    lines = (line for line in read_lines(stream, fmt) if line[0] > after_line)
    while chunk := list(islice(lines, CHUNK_LINES)):
        now = clock.now_ms()
        rows, problems = _validate_chunk(chunk, validator, now)
        yield _Chunk([as_stored(row, now) for row in rows], problems, len(chunk), chunk[-1][0])


@dataclass(frozen=True)
class Source:
    """A file whose progress is kept, so that an ingest of it can be resumed."""

    path: str  # absolute
    fingerprint: str  # of its first bytes

    @classmethod
    def of(cls, path: str) -> Source:
        with open(path, "rb") as head:
            fingerprint = hashlib.sha256(head.read(_FINGERPRINT_BYTES)).hexdigest()
        return cls(os.path.realpath(path), fingerprint)


@dataclass
class FileIngestResult(IngestResult):
    resumed_after: int = 0  # lines up to this one were stored by an earlier ingest, and skipped
    last_line: int = 0  # the last line this ingest has stored (or rejected)
    finished_before: bool = False  # --resume of a file whose ingest had finished: nothing to do
    # Without --resume, a file that begins as one whose ingest finished before: stored again.
    ingested_before: bool = False


class IngestStoppedError(StorageError):
    """The database failed part-way: what was stored before, exactly, and where to resume."""

    def __init__(self, cause: StorageError, result: FileIngestResult) -> None:
        self.result = result
        stored = (f"lines {result.resumed_after + 1} to {result.last_line}" if result.last_line > result.resumed_after
                  else "no line")
        super().__init__(f"{cause}; {result.accepted} events of {stored} were stored before it, and nothing after")


def ingest_stream(trend: Trend, stream: IO[str], fmt: str, *, strict: bool = False,
                  on_progress: Callable[[int], None] | None = None, source: Source | None = None,
                  resume: bool = False) -> FileIngestResult:
    """Validate and store every line; returns counts and the bad lines (at most 1,000 listed).

    With a ``source``, each chunk's transaction also records how far the file has got, and ``resume``
    skips the lines a previous ingest of the same file stored: events without an event_id are never
    counted twice. Where the platform can fork, a second process reads and validates while this one
    stores: on two cores the database's work and Python's overlap, which threads cannot do under the GIL."""
    progress = _starting_point(trend, source, resume)
    result = FileIngestResult(resumed_after=progress.line if progress else 0)
    if source is not None and not resume:
        earlier = trend.ingestor.load_progress(source.path)
        result.ingested_before = bool(earlier and earlier.finished and earlier.fingerprint == source.fingerprint)
    result.last_line = result.resumed_after
    if progress is not None and progress.finished:
        result.finished_before = True
        return result
    # A forked child closes sys.stdin (multiprocessing does): standard input is read through a
    # duplicate of its descriptor (open_text), and a stream with none (a test's) is read here.
    chunks = _in_a_child if _CAN_FORK and stream is not sys.stdin else _here
    validator, clock = trend.ingestor.validator, trend.clock
    with chunks(lambda: _chunks(stream, fmt, validator, clock, result.resumed_after)) as parsed:
        if strict:
            _store_all_or_nothing(trend, parsed, result, on_progress, progress)
            return result
        progress = _store_chunks(trend, parsed, result, on_progress, progress)
    if progress is not None:
        trend.ingestor.save_progress(replace(progress, finished=True))
    return result


def _starting_point(trend: Trend, source: Source | None, resume: bool) -> Progress | None:
    if source is None:
        return None
    earlier = trend.ingestor.load_progress(source.path) if resume else None
    if earlier is None:
        return Progress(source.path, source.fingerprint, 0)
    if earlier.fingerprint != source.fingerprint:
        raise InputError(f"{source.path} does not begin as the file ingested before under that name did; "
                         "--resume would skip lines of another file: ingest it without --resume")
    return earlier


def _store_chunks(trend: Trend, parsed: Iterator[_Chunk], result: FileIngestResult,
                  on_progress: Callable[[int], None] | None, progress: Progress | None) -> Progress | None:
    for chunk in parsed:
        _count(chunk, result)
        if progress is not None:
            progress = replace(progress, line=chunk.last_line, rejected=progress.rejected + len(chunk.problems))
        try:
            inserted, progress = trend.ingestor.store_part(chunk.rows, progress)
        except StorageError as exc:
            raise IngestStoppedError(exc, result) from exc
        result.add(inserted)
        result.last_line = chunk.last_line
        if on_progress is not None:
            on_progress(chunk.lines)
    return progress


def _count(chunk: _Chunk, result: IngestResult) -> None:
    result.rejected += len(chunk.problems)
    result.errors.extend(chunk.problems[:MAX_REPORTED_ERRORS - len(result.errors)])


class _RollbackRequestedError(Exception):
    """Raised inside the strict transaction to undo it."""


def _store_all_or_nothing(trend: Trend, parsed: Iterator[_Chunk], result: FileIngestResult,
                          on_progress: Callable[[int], None] | None, progress: Progress | None) -> None:
    try:
        with trend.ingestor.transaction() as transaction:
            for chunk in parsed:
                _count(chunk, result)
                if chunk.rows and not result.rejected:
                    result.add(transaction.store(chunk.rows))
                result.last_line = chunk.last_line
                if on_progress is not None:
                    on_progress(chunk.lines)
            if result.rejected:
                raise _RollbackRequestedError
            if progress is not None:
                transaction.save_progress(replace(progress, line=result.last_line, finished=True,
                                                  accepted=progress.accepted + result.accepted,
                                                  duplicates=progress.duplicates + result.duplicates))
    except _RollbackRequestedError:
        result.accepted = result.duplicates = 0
        result.last_line = result.resumed_after


def _validate_chunk(chunk: list[Line], validator: EventValidator, now: int
                    ) -> tuple[list[EventRow], list[FieldProblem]]:
    return split_outcomes(payload if isinstance(payload, FieldProblem)
                          else validator.validate_line(payload, number, now) if isinstance(payload, str)
                          else validator.validate(payload, number, now)
                          for number, payload in chunk)


_CAN_FORK = "fork" in multiprocessing.get_all_start_methods()
ChunkSource = Callable[[], Iterator[_Chunk]]


@contextmanager
def _here(source: ChunkSource) -> Iterator[Iterator[_Chunk]]:
    yield source()


@contextmanager
def _in_a_child(source: ChunkSource) -> Iterator[Iterator[_Chunk]]:
    """The chunks, produced by a forked child that reads the stream itself (it shares the open file).
    The pipe holds little, so the child stays about one chunk ahead: memory stays bounded."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_produce, args=(source, sending, receiving, os.getpid()), name="trend-ingest-reader",
                            daemon=True)
    child.start()
    sending.close()
    try:
        yield _received(receiving)
    finally:
        receiving.close()  # a child still sending gets an error and ends
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()
            child.join()


def _received(receiving: Connection) -> Iterator[_Chunk]:
    while True:
        try:
            item = receiving.recv()
        except EOFError:
            raise InputError("the process reading the file ended without finishing it") from None
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _produce(source: ChunkSource, sending: Connection, inherited: Connection, parent: int) -> None:
    # The child must not keep the parent's end of the pipe open: once the parent is gone, sending then
    # fails instead of blocking for ever on a full pipe.
    inherited.close()
    _die_with(parent)
    # The collector's passes took a quarter of this child's time: they walked every object the fork
    # inherited, and ran every 700 new ones. Lines become rows without cycles, so rare passes over only
    # its own objects lose nothing.
    gc.freeze()
    gc.set_threshold(_CHILD_GC_THRESHOLD)
    try:
        for chunk in source():
            sending.send(chunk)
        sending.send(None)
    except (BrokenPipeError, OSError):
        pass  # the parent stopped listening
    except Exception as exc:  # an unreadable file, a bad CSV header: the parent raises it
        sending.send(exc)
    finally:
        sending.close()


def _die_with(parent: int) -> None:
    """Linux: the kernel sends this process SIGKILL when its parent dies, even while it reads."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: the closed pipe above still ends it at its next send
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def open_text(path: str, stdin: IO[str]) -> IO[str]:
    """The file at ``path`` (``-``: standard input, through a duplicate of its descriptor, which the
    reading child keeps open); a path that cannot be read is an InputError naming it. Bytes that are
    not UTF-8 are kept as surrogates, for the line that holds them to be reported (:func:`_is_utf8`);
    a byte-order mark at the start (Excel's CSV has one) is not part of the first line."""
    if path == "-":
        try:
            descriptor = stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return stdin  # no descriptor: read as it is, in this process
        return open(os.dup(descriptor), encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file of events") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
