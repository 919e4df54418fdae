"""``trend demo``: realistic traffic, so a new user sees a live dashboard."""

from __future__ import annotations

import signal
import threading

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from trend.cli.common import console, counted, err_console, handles_errors, json_option, open_trend, print_json
from trend.shapes import rollup_shape


@click.command()
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
            task = bar.add_task("history", total=minutes)
            for _index, events in history(traffic, now, minutes):
                result = trend.ingest(events)
                totals["accepted"] += result.accepted
                totals["duplicates"] += result.duplicates
                bar.advance(task)
        reports = trend.rollup()
        summary = {**totals, "minutes": minutes, "rollup": rollup_shape(reports)["levels"]}
        if as_json:
            print_json(summary)
        else:
            console.print(f"{counted(totals['accepted'], 'event')} over {minutes} minutes "
                          f"({counted(totals['duplicates'], 'duplicate')} ignored), rolled up. "
                          "Open the dashboard: trend serve, then http://127.0.0.1:8000/")
        stop = threading.Event()
        if live:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        while live and not stop.wait(2):
            result = trend.ingest(live_batch(traffic, trend.clock.now_ms, 2))
            if not as_json:
                console.print(f"live: +{result.accepted} events", highlight=False)


