"""``trend ingest``: events from a file or a stream, resumable."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TransferSpeedColumn

from trend.cli.common import console, counted, err_console, handles_errors, json_option, open_trend, print_json
from trend.errors import InputError
from trend.file_ingest import IngestStoppedError, Source, detect_format, ingest_stream, open_text
from trend.ingest import IngestResult
from trend.shapes import ingest_shape


@contextmanager
def _progress(stream: IO[str], path: str, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar by bytes read, on a terminal and for a real file only."""
    if not enabled or path == "-":
        yield None
        return
    total = Path(path).stat().st_size
    with Progress(TextColumn("ingesting"), BarColumn(), TaskProgressColumn(), TransferSpeedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("ingest", total=total)
        raw = getattr(stream, "buffer", None)  # the byte position is what the total is measured in
        yield lambda _lines: bar.update(task, completed=min(total, raw.tell() if raw is not None else 0))


@click.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv"]), default="auto", show_default=True,
              help="auto: CSV for a PATH ending in .csv; for standard input, JSON Lines when the first line "
                   "begins with {, else CSV.")
@click.option("--strict", is_flag=True, help="All or nothing: one bad line stores nothing.")
@click.option("--resume", is_flag=True,
              help="Go on after the last line an earlier ingest of this file stored (the database keeps it per "
                   "file), so that events without an event_id are never counted twice.")
@json_option
@handles_errors
def ingest(path: str, fmt: str, strict: bool, resume: bool, as_json: bool) -> None:
    """Read events from JSON Lines or CSV (PATH, or - for standard input).

    Each line is one event, a JSON object (CSV: the same names as header columns):

    \b
      event     required, 1-64 characters: the event type, e.g. search
      key       required, 1-256 characters: what trends, e.g. a keyword or an item id
      ts        ISO-8601 with a zone, or epoch seconds; default now; at most
                TREND_ACCEPTED_LATENESS (6 days) old and 5 minutes ahead
      segment   up to 64 characters, e.g. a category or a region
      user_id   up to 128 characters: distinct users are counted from it (empty: none)
      value     a number from -1e15 to 1e15, default 1
      event_id  up to 128 characters: a line sent again with the same id is a duplicate
                (empty: none)

    Unknown fields are an error. A bad line is reported with its number and stores nothing of itself;
    the good lines are stored (all or nothing with --strict).

    \b
    The summary: "6 accepted, 1 duplicate, 5 rejected (stored)": accepted lines are stored, a
    duplicate repeats an event_id already stored, rejected lines are bad; "(stored)" says the good
    lines were kept, "(rolled back)" that --strict kept none.
    Exit status: 0 every line was good; 1 some lines were bad (the good ones are stored, unless
    --strict); 2 the command itself is wrong (an option, a file that cannot be read); 3 the database
    failed part-way (the message says which lines are stored, and --resume goes on)."""
    regular = path != "-" and os.path.isfile(path)
    if resume and not regular:
        raise InputError("--resume needs a file: a stream keeps no place to go on from")
    stream = open_text(path, sys.stdin)
    try:
        with open_trend() as trend, _progress(stream, path, err_console.is_terminal and not as_json) as progress:
            try:
                result = ingest_stream(trend, stream, detect_format(path, fmt, stream), strict=strict,
                                       on_progress=progress,
                                       source=Source.of(path) if regular else None, resume=resume)
            except IngestStoppedError as exc:
                _ingest_stopped(exc, path if regular else None, as_json)
    finally:
        if stream is not sys.stdin:
            stream.close()
    if result.ingested_before:
        # Events without an event_id were counted a second time: say so, and how not to.
        click.echo(f"note: {path} was ingested completely before; its events without an event_id now count "
                   "twice. --resume skips what an earlier ingest of a file stored.", err=True)
    if as_json:
        print_json({**ingest_shape(result, "line"), "resumed_after": result.resumed_after,
                     "last_line": result.last_line, "ingested_before": result.ingested_before})
    else:
        _print_problems(result)
        if result.finished_before:
            console.print(f"{path} was ingested completely before: nothing to resume", highlight=False)
        verb = "rolled back" if strict and result.rejected else "stored"
        after = f", after line {result.resumed_after}" if result.resumed_after else ""
        console.print(f"{result.accepted} accepted, {counted(result.duplicates, 'duplicate')}, "
                      f"{result.rejected} rejected ({verb}{after})", highlight=False)
    if result.rejected:
        sys.exit(1)


def _print_problems(result: IngestResult) -> None:
    for problem in result.errors:
        where = f"{problem.field}: " if problem.field else ""
        err_console.print(f"line {problem.position}: {where}{problem.message}", highlight=False, markup=False)


def _ingest_stopped(exc: IngestStoppedError, path: str | None, as_json: bool) -> None:
    """What a failed ingest stored, exactly, and the command that goes on from there; exit 3."""
    result = exc.result
    resume = None if path is None else f"trend ingest {shlex.quote(path)} --resume"
    if as_json:
        click.echo(json.dumps({"error": {"code": "database_error", "message": str(exc),
                                         **ingest_shape(result, "line"), "resumed_after": result.resumed_after,
                                         "last_line": result.last_line, "resume": resume}}, ensure_ascii=False))
    else:
        _print_problems(result)
        click.echo(f"error: {exc}", err=True)
        click.echo(f"to go on from line {result.last_line + 1}: {resume}" if resume else
                   f"a stream cannot be resumed: skip its first {result.last_line} lines and send the rest", err=True)
    sys.exit(3)


