"""The ``trend`` command group. Every command takes ``--json`` for machine-readable output."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TransferSpeedColumn
from rich.table import Table

from trend.config import Settings, load_settings, parse_duration
from trend.errors import ConfigError, InputError, StorageError
from trend.file_ingest import IngestStoppedError, Source, detect_format, ingest_stream, open_text
from trend.ingest import IngestResult
from trend.logging import get_logger, own_process_logging
from trend.model import LEVELS, format_utc, isoformat
from trend.query.windows import WINDOWS
from trend.service import Trend
from trend.shapes import (
    delivery_shape,
    ingest_shape,
    rising_shape,
    rollup_shape,
    rule_shape,
    series_shape,
    status_shape,
    top_shape,
)
from trend.validation import parse_time

F = TypeVar("F", bound=Callable[..., Any])
# Off a terminal rich assumes 80 columns; tables of times need more to stay readable in logs and pipes.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def _fail(message: str, error_code: str, as_json: bool, code: int = 2) -> None:
    """One line on stderr, or with ``--json`` the error shape on stdout; then a non-zero exit."""
    if as_json:
        click.echo(json.dumps({"error": {"code": error_code, "message": message}}, ensure_ascii=False))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(func: F) -> F:
    """Turn our exceptions into a one-line message and an exit status, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json", False))
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc), "invalid_setting", as_json)
        except InputError as exc:
            _fail(str(exc), "invalid_input", as_json)
        except StorageError as exc:
            _fail(str(exc), "database_error", as_json, code=3)
        return None

    return wrapper  # type: ignore[return-value]  # wraps keeps the signature click needs


@contextmanager
def _trend(**overrides: Any) -> Iterator[Trend]:
    """A Trend for one command, without its worker, closed when the command ends."""
    trend = Trend(load_settings(**{"worker_enabled": False, **overrides}))
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
    own_process_logging()  # this process is trend's: its log format is the output, not the host's


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TREND_HOST", show_envvar=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="TREND_PORT",
              show_envvar=True)
@click.option("--no-worker", is_flag=True, help="Serve the API without running the scheduled jobs.")
@click.option("--access-log", is_flag=True, envvar="TREND_ACCESS_LOG", show_envvar=True,
              help="Log every request (uvicorn's access log).")
@handles_errors
def serve(host: str, port: int, no_worker: bool, access_log: bool) -> None:
    """The API, the dashboard and the worker."""
    import uvicorn

    from trend.api.app import create_app

    settings = load_settings(**({"worker_enabled": False} if no_worker else {}))
    trend = Trend(settings)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # bound: a busy port fails before this, with uvicorn's own error
                get_logger("serve").info("serving http://%s:%d (dashboard at /, API docs at /docs)", host, port)

    try:
        trend.db.ensure_schema()
        warn_if_exposed(host, settings)
        # uvicorn raises the signal that stopped it again once it has shut down, which would end the
        # process as killed (143); a SIGTERM that stopped the server cleanly is a clean exit.
        signal.signal(signal.SIGTERM, lambda *_: None)
        Server(uvicorn.Config(create_app(trend=trend), host=host, port=port, access_log=access_log,
                              log_level="info" if access_log else "warning")).run()
    finally:
        trend.close()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def warn_if_exposed(host: str, settings: Settings) -> bool:
    """Binding beyond loopback without a key lets anyone write events and run jobs: say so loudly."""
    if host in LOOPBACK or settings.api_key is not None:
        return False
    get_logger("serve").warning(
        "LISTENING ON %s WITHOUT TREND_API_KEY: anyone who can reach this port can write events and run jobs. "
        "Set TREND_API_KEY, or bind to 127.0.0.1.", host)
    return True


def _stop_on_signals(trend: Trend) -> None:
    """SIGINT or SIGTERM stop a run after its current bucket, which commits; its record says
    ``interrupted`` and the rest stays marked for the next run."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: trend.stopping.set())


@main.command()
@handles_errors
def worker() -> None:
    """Run the scheduler alone until SIGINT or SIGTERM, then stop gracefully."""
    trend = Trend(load_settings(worker_enabled=True))
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
@click.option("--resume", is_flag=True,
              help="Go on after the last line an earlier ingest of this file stored (the database keeps it per "
                   "file), so that events without an event_id are never counted twice.")
@json_option
@handles_errors
def ingest(path: str, fmt: str, strict: bool, resume: bool, as_json: bool) -> None:
    """Read events from JSON Lines or CSV (PATH, or - for standard input).

    Each line is one event: event and key are required; ts (ISO-8601 with a zone, or epoch seconds; default
    now), segment, user_id, value (default 1) and event_id are optional. CSV takes them as column names."""
    regular = path != "-" and os.path.isfile(path)
    if resume and not regular:
        raise InputError("--resume needs a file: a stream keeps no place to go on from")
    stream = open_text(path, sys.stdin)
    try:
        with _trend() as trend, _progress(stream, path, err_console.is_terminal and not as_json) as progress:
            try:
                result = ingest_stream(trend, stream, detect_format(path, fmt), strict=strict, on_progress=progress,
                                       source=Source.of(path) if regular else None, resume=resume)
            except IngestStoppedError as exc:
                _ingest_stopped(exc, path if regular else None, as_json)
    finally:
        if stream is not sys.stdin:
            stream.close()
    if as_json:
        _print_json({**ingest_shape(result, "line"), "resumed_after": result.resumed_after,
                     "last_line": result.last_line})
    else:
        _print_problems(result)
        if result.finished_before:
            console.print(f"{path} was ingested completely before: nothing to resume", highlight=False)
        verb = "rolled back" if strict and result.rejected else "stored"
        after = f", after line {result.resumed_after}" if result.resumed_after else ""
        console.print(f"{result.accepted} accepted, {result.duplicates} duplicates, {result.rejected} rejected"
                      f" ({verb}{after})", highlight=False)
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


@main.command()
@click.option("--level", type=click.Choice([*LEVELS.names, "all"]), default="all", show_default=True)
@click.option("--whole-buckets", is_flag=True,
              help="SQLite: write each bucket in one transaction, not in pieces. About 1.4x faster, but it "
                   "holds the write lock for up to a second per bucket: only when no app writes meanwhile.")
@json_option
@handles_errors
def rollup(level: str, whole_buckets: bool, as_json: bool) -> None:
    """Run now, catching up every dirty closed bucket."""
    with _trend() as trend:
        _stop_on_signals(trend)
        reports = trend.rollup(level, whole_buckets=whole_buckets)
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
@click.option("--start", required=True, help="ISO-8601 with a zone, epoch seconds, or now-<duration> (now-2h).")
@click.option("--end", required=True, help="ISO-8601 with a zone, epoch seconds, now, or now-<duration>.")
@json_option
@handles_errors
def backfill(start: str, end: str, as_json: bool) -> None:
    """Recompute every bucket of a range from the raw events."""
    start_ms, end_ms = _cli_time("--start", start), _cli_time("--end", end)
    with _trend() as trend:
        _stop_on_signals(trend)
        reports = trend.backfill(start_ms, end_ms)
    if as_json:
        _print_json(rollup_shape(reports))
    else:
        console.print(f"backfilled {format_utc(start_ms)} to {format_utc(end_ms)}")
        for r in reports:
            console.print(f"  {r.level}: {r.outcome}, {r.buckets} buckets, {r.rows} rows, {r.seconds:.2f}s")


def _cli_time(option: str, text: str) -> int:
    """ISO-8601 with a zone, epoch seconds, ``now``, or ``now-<duration>`` such as ``now-2h``."""
    try:
        if text == "now" or text.startswith("now-"):
            ago = parse_duration(text[4:]) if text != "now" else 0
            return int(time.time() * 1000) - ago
        return parse_time(float(text) if text.replace(".", "", 1).isdigit() else text)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


@main.command("erase-user")
@click.argument("user_id")
@json_option
@handles_errors
def erase_user(user_id: str, as_json: bool) -> None:
    """Delete one person's raw events and recompute every level without them (a privacy request)."""
    with _trend() as trend:
        erased = trend.erase_user(user_id)
        reports = trend.rollup()
    if as_json:
        _print_json({"user_id": user_id, "events": erased.events, "minutes": erased.minutes,
                     **rollup_shape(reports)})
    else:
        console.print(f"erased {erased.events} events of {user_id!r} from {erased.minutes} minutes; "
                      "rollups recomputed. Older rollups keep counts and hashed registers only.", highlight=False)


@main.command()
@json_option
@handles_errors
def status(as_json: bool) -> None:
    """Per level: the dirty backlog, the oldest dirty bucket, the last run and its outcome."""
    with _trend() as trend:
        cluster = trend.cluster()
        shape = status_shape(trend.status(), trend.settings.zone, trend.database_info(), cluster)
    if as_json:
        _print_json(shape)
    else:
        _print_status(shape)
    if cluster is not None and not cluster.healthy:
        sys.exit(1)


def _print_status(shape: dict[str, Any]) -> None:
    console.print(f"database: {shape['database']['backend']}; users sketches: {shape['database']['users_sketches']}",
                  highlight=False)
    table = Table("level", "dirty", "oldest dirty", "lag s", "last run", "outcome", "buckets", "rows")
    for level in shape["levels"]:
        run = level["last_run"] or {}
        table.add_row(level["level"], str(level["dirty"]), level["oldest_dirty"] or "-",
                      f"{level['lag_seconds']:.0f}", run.get("started") or "-", run.get("outcome") or "-",
                      str(run.get("buckets", "-")), str(run.get("rows", "-")))
    console.print(table)
    if "cluster" not in shape:
        return
    nodes = Table("node", "role", "reachable", "shards", "prepared waiting")
    for node in shape["cluster"]["nodes"]:
        nodes.add_row(f"{node['host']}:{node['port']}", node["role"], "yes" if node["reachable"] else "NO",
                      str(node["shards"]), "-" if node["prepared"] is None else str(node["prepared"]))
    console.print(nodes)
    for warning in shape["cluster"]["warnings"]:
        console.print(f"warning: {warning}", highlight=False, markup=False)


event_option = click.option("--event", required=True, help="The event type, e.g. search.")
segment_option = click.option("--segment", default=None, help="One segment; all segments when omitted.")
limit_option = click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
by_option = click.option("--by", type=click.Choice(["count", "users"]), default="count", show_default=True,
                         help="Rank by events or by distinct users.")


def _users(value: int | None) -> str:
    return "-" if value is None else str(value)


at_option = click.option("--at", default=None,
                         help="The window's end: ISO-8601 with a zone, epoch seconds, or now-<duration>.")
window_choice = click.Choice(list(WINDOWS))


def _optional_time(option: str, text: str | None) -> int | None:
    return None if text is None else _cli_time(option, text)


@main.command()
@event_option
@segment_option
@click.option("--window", type=window_choice, default="1h", show_default=True)
@at_option
@limit_option
@by_option
@json_option
@handles_errors
def top(event: str, segment: str | None, window: str, at: str | None, limit: int, by: str, as_json: bool) -> None:
    """The most frequent keys over a window, with their rank change."""
    with _trend() as trend:
        shape = top_shape(trend.top(event, segment=segment, window=window, at_ms=_optional_time("--at", at),
                                    limit=limit, by=by), trend.settings.zone)
    if as_json:
        _print_json(shape)
        return
    table = Table("rank", "key", "count", "users", "change",
                  title=f"top {event} by {by} over {window} to {shape['end']}")
    for item in shape["items"]:
        change = "NEW" if item["is_new"] else f"{item['rank_change']:+d}" if item["rank_change"] else "="
        table.add_row(str(item["rank"]), item["key"], str(item["count"]), _users(item["users"]), change)
    console.print(table)


@main.command()
@event_option
@segment_option
@click.option("--window", type=window_choice, default="15m", show_default=True)
@click.option("--baseline", default=12, show_default=True, type=click.IntRange(1, 48),
              help="How many windows before the current one form the baseline.")
@click.option("--min-count", default=5, show_default=True, type=click.IntRange(1))
@at_option
@limit_option
@by_option
@json_option
@handles_errors
def rising(event: str, segment: str | None, window: str, baseline: int, min_count: int, at: str | None,
           limit: int, by: str, as_json: bool) -> None:
    """Keys rising fastest against their own recent past."""
    with _trend() as trend:
        result = trend.rising(event, segment=segment, window=window, baseline=baseline, min_count=min_count,
                              at_ms=_optional_time("--at", at), limit=limit, by=by)
        shape = rising_shape(result, trend.settings.zone)
    if as_json:
        _print_json(shape)
        return
    table = Table("rank", "key", "count", "users", "baseline", "score", "growth %",
                  title=f"rising {event} by {by} over {window}")
    for item in shape["items"]:
        table.add_row(str(item["rank"]), item["key"], str(item["count"]), _users(item["users"]),
                      f"{item['baseline']:.1f}",
                      f"{item['score']:.2f}", f"{item['growth_pct']:+.0f}")
    console.print(table)


@main.command()
@event_option
@click.option("--key", "keys", multiple=True, help="A key; repeat to compare up to 5. Every key together when omitted.")
@segment_option
@click.option("--interval", type=click.Choice(LEVELS.names), default=LEVELS.finest.name, show_default=True)
@click.option("--start", default=None, help="ISO-8601 with a zone or epoch seconds.")
@click.option("--end", default=None, help="ISO-8601 with a zone or epoch seconds; default now.")
@click.option("--compare", type=click.Choice(["previous"]), default=None,
              help="Add the period before, aligned point by point.")
@json_option
@handles_errors
def series(event: str, keys: tuple[str, ...], segment: str | None, interval: str, start: str | None,
           end: str | None, compare: str | None, as_json: bool) -> None:
    """One point per bucket of the interval, zero-filled."""
    with _trend() as trend:
        result = trend.series(event, key=list(keys) if keys else None, segment=segment, interval=interval,
                              start_ms=_optional_time("--start", start), end_ms=_optional_time("--end", end),
                              compare=compare)
        shape = series_shape(result, trend.settings.zone)
    if as_json:
        _print_json(shape)
        return
    for line in shape["series"]:
        previous = line["previous"] or [None] * len(line["points"])
        table = Table("time", "count", "users", "sum", "min", "max", *(["previous count"] if compare else []),
                      title=f"{event} {line['key'] or '(all keys)'} per {interval}")
        for point, before in zip(line["points"], previous, strict=True):
            table.add_row(point["t"], str(point["count"]), _users(point["users"]), f"{point['sum']:g}",
                          "-" if point["min"] is None else f"{point['min']:g}",
                          "-" if point["max"] is None else f"{point['max']:g}",
                          *([str(before["count"])] if before is not None else []))
        console.print(table)


@main.command()
@click.option("--minutes", default=180, show_default=True, type=click.IntRange(1, 8 * 24 * 60),
              help="How much history to generate, ending now.")
@click.option("--rate", default=300, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Events per minute, before bursts.")
@click.option("--live", is_flag=True, help="Keep adding events in real time until interrupted.")
@click.option("--seed", default=7, show_default=True, type=int)
@json_option
@handles_errors
def demo(minutes: int, rate: int, live: bool, seed: int, as_json: bool) -> None:
    """Generate realistic traffic into the configured database, so the dashboard has trends to show.

    With --live on a database that has events, only the minutes since the newest one are written
    before the live traffic starts."""
    from trend.demo import Traffic, history
    from trend.demo import live as live_batch

    with _trend() as trend:
        now = trend.clock.now_ms()
        minutes = min(minutes, (trend.settings.accepted_lateness - 60_000) // 60_000)
        newest = trend.newest_event_minute() if live else None
        if newest is not None:
            # Live traffic continues what is there: only the minutes since the newest event, not the
            # whole history again, which would double it.
            minutes = min(minutes, max(0, (now - now % 60_000 - newest) // 60_000 - 1))
        traffic = Traffic(now, rate, seed)
        totals = {"accepted": 0, "duplicates": 0}
        show = err_console.is_terminal and not as_json
        with Progress(TextColumn("demo"), BarColumn(), TaskProgressColumn(), console=err_console, transient=True,
                      disable=not show) as bar:
            task = bar.add_task("history", total=minutes)
            for _index, events in history(traffic, now, minutes):
                result = trend.ingest(events)
                totals["accepted"] += result.accepted
                totals["duplicates"] += result.duplicates
                bar.advance(task)
        reports = trend.rollup()
        summary = {**totals, "minutes": minutes, "rollup": rollup_shape(reports)["levels"]}
        if as_json:
            _print_json(summary)
        else:
            console.print(f"{totals['accepted']} events over {minutes} minutes ({totals['duplicates']} duplicates "
                          "ignored), rolled up. Open the dashboard: trend serve, then http://127.0.0.1:8000/")
        stop = threading.Event()
        if live:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        while live and not stop.wait(2):
            result = trend.ingest(live_batch(traffic, trend.clock.now_ms, 2))
            if not as_json:
                console.print(f"live: +{result.accepted} events", highlight=False)


@main.group()
def alerts() -> None:
    """Alert rules: a webhook is called when a key rises, enters the top, or crosses a threshold."""


@alerts.command("add")
@click.option("--name", default=None)
@event_option
@segment_option
@by_option
@click.option("--condition", required=True, type=click.Choice(["rising", "enters_top", "threshold"]))
@click.option("--window", type=window_choice, default="15m", show_default=True)
@click.option("--key", default=None, help="threshold: the key watched.")
@click.option("--min-score", type=float, default=None, help="rising: the z-score to reach (default 3).")
@click.option("--min-count", type=click.IntRange(1), default=None, help="rising: at least this many (default 5).")
@click.option("--top", type=click.IntRange(1, 100), default=None, help="enters_top: the size of the top.")
@click.option("--threshold", type=click.IntRange(1), default=None, help="threshold: the value to cross.")
@click.option("--url", required=True, help="The webhook: http:// or https://.")
@click.option("--secret", default=None, help="The HMAC key (16+ characters); made when omitted.")
@click.option("--cooldown", default="1h", show_default=True, help="The least time between two firings per key.")
@json_option
@handles_errors
def alerts_add(as_json: bool, **rule: Any) -> None:
    """Add a rule. Its secret is shown this once."""
    with _trend() as trend:
        added = trend.add_alert(**{k: v for k, v in rule.items() if v is not None})
        zone = trend.settings.zone
    if as_json:  # the same shapes as HTTP: times in ISO-8601 in TREND_TIMEZONE
        _print_json(rule_shape(added, zone))
    else:
        console.print(f"alert {added['id']} added; its secret (shown once, it signs every delivery): "
                      f"{added['secret']}", highlight=False)


@alerts.command("list")
@json_option
@handles_errors
def alerts_list(as_json: bool) -> None:
    """Every rule, without its secret."""
    with _trend() as trend:
        rules = trend.alert_rules()
        zone = trend.settings.zone
    if as_json:
        _print_json({"rules": [rule_shape(rule, zone) for rule in rules]})
        return
    table = Table("id", "name", "event", "condition", "window", "by", "url", "cooldown s")
    for rule in rules:
        table.add_row(str(rule["id"]), rule["name"], rule["event"], rule["condition"], rule["window"], rule["by"],
                      rule["url"], str(rule["cooldown_seconds"]))
    console.print(table)


@alerts.command("remove")
@click.argument("rule_id", type=int)
@handles_errors
def alerts_remove(rule_id: int) -> None:
    """Remove a rule."""
    with _trend() as trend:
        if not trend.remove_alert(rule_id):
            raise InputError(f"no alert rule {rule_id}")
    console.print(f"alert {rule_id} removed")


def _delivery_table(found: list[dict[str, Any]], zone: Any) -> None:
    table = Table("id", "created", "key", "status", "attempts", "last status", "last error")
    for d in found:
        table.add_row(d["id"], isoformat(d["created_at"], zone), d["key"] or ("(test)" if d["test"] else "-"),
                      d["status"], str(d["attempts"]), str(d["last_status"] or "-"), d["last_error"] or "-")
    console.print(table)


@alerts.command("test")
@click.argument("rule_id", type=int)
@json_option
@handles_errors
def alerts_test(rule_id: int, as_json: bool) -> None:
    """Send one delivery, marked as a test, to the rule's webhook now."""
    with _trend() as trend:
        delivery = trend.test_alert(rule_id)
        if delivery is None:
            raise InputError(f"no alert rule {rule_id}")
        if as_json:
            _print_json(delivery_shape(delivery, trend.settings.zone))
        else:
            _delivery_table([delivery], trend.settings.zone)


@alerts.command("deliveries")
@click.argument("rule_id", type=int)
@json_option
@handles_errors
def alerts_deliveries(rule_id: int, as_json: bool) -> None:
    """The rule's deliveries, newest first."""
    with _trend() as trend:
        found = trend.alert_deliveries(rule_id)
        if as_json:
            _print_json({"deliveries": [delivery_shape(d, trend.settings.zone) for d in found]})
        else:
            _delivery_table(found, trend.settings.zone)
