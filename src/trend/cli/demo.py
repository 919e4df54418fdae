"""``trend demo``: realistic traffic, so a new user sees a live dashboard."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import nullcontext

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from trend.cli.common import console, counted, err_console, handles_errors, json_option, open_trend, print_json
from trend.rollup.shell import RunReport
from trend.service import Trend
from trend.shapes import rollup_shape

# Twelve hours of baseline before the current hour, and an hour to spare: every default view of the
# dashboard (Rising over 1h included) has a full history, so it shows growth.
DEFAULT_MINUTES = 14 * 60
# How long the demo waits for a rollup another process (a running server's worker) has claimed.
PATIENCE_SECONDS = 120


@click.command()
@click.option("--minutes", default=DEFAULT_MINUTES, show_default=True, type=click.IntRange(1, 8 * 24 * 60),
              help="How much history to generate, ending now. The default fills the baseline of a 1h Rising "
                   "(12 windows before the current one).")
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

    with open_trend() as trend:
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
            task = bar.add_task("history", total=minutes + 1)
            for _index, events in history(traffic, now, minutes):
                result = trend.ingest(events)
                totals["accepted"] += result.accepted
                totals["duplicates"] += result.duplicates
                bar.advance(task)
        reports, waiting = _rollup_all(trend, show)
        summary = {**totals, "minutes": minutes, "rollup": rollup_shape(reports)["levels"],
                   "waiting": waiting}
        if as_json:
            print_json(summary)
        else:
            console.print(f"{counted(totals['accepted'], 'event')} over {minutes} minutes "
                          f"({counted(totals['duplicates'], 'duplicate')} ignored), rolled up. "
                          "Open the dashboard: trend serve, then http://127.0.0.1:8000/")
            if waiting:
                err_console.print(f"still waiting for another process's rollup: {_waiting_text(waiting)}. Reads "
                                  "stay exact meanwhile; `trend rollup` finishes it.", highlight=False)
        stop = threading.Event()
        if live:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        since = now
        while live and not stop.wait(2):
            until = trend.clock.now_ms()
            result = trend.ingest(live_batch(traffic, since, until))
            since = until
            if not as_json:
                console.print(f"live: +{result.accepted} events", highlight=False)


def _rollup_all(trend: Trend, show: bool) -> tuple[list[RunReport], dict[str, int]]:
    """Roll up everything closed, waiting (a while) for buckets another process has claimed: a
    server's worker may be in the middle of one, and its hourly job would otherwise leave the rest of
    the demo's hour waiting for the next hour. Returns the reports and, per level, what is still dirty."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    with err_console.status("rolling up", spinner="dots") if show else nullcontext():
        while True:
            reports = trend.rollup()
            waiting = {status.level: status.backlog.dirty for status in trend.status() if status.backlog.dirty}
            if not waiting or time.monotonic() >= deadline:
                return reports, waiting
            time.sleep(1)


def _waiting_text(waiting: dict[str, int]) -> str:
    return ", ".join(f"{level} {counted(dirty, 'bucket')}" for level, dirty in waiting.items())
