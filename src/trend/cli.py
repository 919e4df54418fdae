"""The ``trend`` command group. Every command takes ``--json`` for machine-readable output."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TransferSpeedColumn
from rich.table import Table

from trend.config import Settings, load_settings
from trend.errors import ConfigError, InputError, StorageError
from trend.file_ingest import detect_format, ingest_stream, open_text
from trend.model import format_utc
from trend.service import Trend
from trend.shapes import ingest_shape, rollup_shape, status_shape
from trend.validation import parse_time

F = TypeVar("F", bound=Callable[..., Any])
# Off a terminal rich assumes 80 columns; tables of times need more to stay readable in logs and pipes.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(func: F) -> F:
    """Turn our exceptions into a one-line message and an exit status, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc))
        except InputError as exc:
            _fail(str(exc))
        except StorageError as exc:
            _fail(str(exc), code=3)
        return None

    return wrapper  # type: ignore[return-value]  # wraps keeps the signature click needs


def _settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


@contextmanager
def _trend(**overrides: Any) -> Iterator[Trend]:
    """A Trend for one command, without its worker, closed when the command ends."""
    trend = Trend(_settings(**{"worker_enabled": False, **overrides}))
    try:
        yield trend
    finally:
        trend.close()


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.group()
@click.version_option(package_name="trend")
def main() -> None:
    """trend: exact, real-time trends from an event stream."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Serve the API without running the scheduled jobs.")
@handles_errors
def serve(host: str, port: int, no_worker: bool) -> None:
    """The API, the dashboard and the worker."""
    import uvicorn

    from trend.api.app import create_app

    settings = _settings(**({"worker_enabled": False} if no_worker else {}))
    trend = Trend(settings)
    trend.db.ensure_schema()
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        from trend.logging import get_logger

        get_logger("serve").warning(
            "LISTENING ON %s WITHOUT TREND_API_KEY: anyone who can reach this port can write events "
            "and run jobs", host)
    uvicorn.run(create_app(trend=trend), host=host, port=port, log_level="warning")


@main.command()
@handles_errors
def worker() -> None:
    """Run the scheduler alone until SIGINT or SIGTERM, then stop gracefully."""
    trend = Trend(_settings(worker_enabled=True))
    trend.db.ensure_schema()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    trend.start_worker()
    while not stop.wait(1.0):
        pass
    # Running buckets finish their transaction (or roll back); nothing is half written.
    trend.close()


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


@main.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv"]), default="auto", show_default=True)
@click.option("--strict", is_flag=True, help="All or nothing: one bad line stores nothing.")
@json_option
@handles_errors
def ingest(path: str, fmt: str, strict: bool, as_json: bool) -> None:
    """Read events from JSON Lines or CSV (PATH, or - for standard input)."""
    stream = open_text(path, sys.stdin)
    try:
        with _trend() as trend, _progress(stream, path, err_console.is_terminal and not as_json) as progress:
            result = ingest_stream(trend, stream, detect_format(path, fmt), strict=strict, on_progress=progress)
    finally:
        if stream is not sys.stdin:
            stream.close()
    if as_json:
        _print_json(ingest_shape(result, "line"))
    else:
        for problem in result.errors:
            where = f"{problem.field}: " if problem.field else ""
            err_console.print(f"line {problem.position}: {where}{problem.message}", highlight=False, markup=False)
        verb = "rolled back" if strict and result.rejected else "stored"
        console.print(f"{result.accepted} accepted, {result.duplicates} duplicates, {result.rejected} rejected"
                      f" ({verb})")
    if result.rejected:
        sys.exit(1)


@main.command()
@click.option("--level", type=click.Choice(["1m", "5m", "1h", "all"]), default="all", show_default=True)
@json_option
@handles_errors
def rollup(level: str, as_json: bool) -> None:
    """Run now, catching up every dirty closed bucket."""
    with _trend() as trend:
        reports = trend.rollup(level)
    if as_json:
        _print_json(rollup_shape(reports))
    else:
        table = Table("level", "outcome", "buckets", "rows", "seconds")
        for r in reports:
            table.add_row(r.level, r.outcome, str(r.buckets), str(r.rows), f"{r.seconds:.3f}")
        console.print(table)
    if any(r.outcome == "failed" for r in reports):
        sys.exit(1)


@main.command()
@click.option("--start", required=True, help="ISO-8601 with a zone, or epoch seconds.")
@click.option("--end", required=True, help="ISO-8601 with a zone, or epoch seconds.")
@json_option
@handles_errors
def backfill(start: str, end: str, as_json: bool) -> None:
    """Recompute every bucket of a range from the raw events."""
    start_ms, end_ms = _cli_time("--start", start), _cli_time("--end", end)
    with _trend() as trend:
        reports = trend.backfill(start_ms, end_ms)
    if as_json:
        _print_json(rollup_shape(reports))
    else:
        console.print(f"backfilled {format_utc(start_ms)} to {format_utc(end_ms)}")
        for r in reports:
            console.print(f"  {r.level}: {r.outcome}, {r.buckets} buckets, {r.rows} rows, {r.seconds:.2f}s")


def _cli_time(option: str, text: str) -> int:
    try:
        return parse_time(float(text) if text.replace(".", "", 1).isdigit() else text)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


@main.command()
@json_option
@handles_errors
def status(as_json: bool) -> None:
    """Per level: the dirty backlog, the oldest dirty bucket, the last run and its outcome."""
    with _trend() as trend:
        shape = status_shape(trend.status(), trend.settings.zone)
    if as_json:
        _print_json(shape)
        return
    table = Table("level", "dirty", "oldest dirty", "lag s", "last run", "outcome", "buckets", "rows")
    for level in shape["levels"]:
        run = level["last_run"] or {}
        table.add_row(level["level"], str(level["dirty"]), level["oldest_dirty"] or "-",
                      f"{level['lag_seconds']:.0f}", run.get("started") or "-", run.get("outcome") or "-",
                      str(run.get("buckets", "-")), str(run.get("rows", "-")))
    console.print(table)
