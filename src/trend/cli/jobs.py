"""The rollup jobs and the data behind them: ``rollup``, ``backfill``, ``erase-user`` and ``status``."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from trend.cli.common import (
    cli_time,
    console,
    counted,
    handles_errors,
    json_option,
    open_trend,
    print_json,
    stop_on_signals,
)
from trend.model import LEVELS, format_utc
from trend.shapes import rollup_shape, status_shape


@click.command()
@click.option("--level", type=click.Choice([*LEVELS.names, "all"]), default="all", show_default=True)
@click.option("--whole-buckets", is_flag=True,
              help="SQLite: write each bucket in one transaction, not in pieces. About 1.4x faster, but it "
                   "holds the write lock for up to a second per bucket: only when no app writes meanwhile.")
@json_option
@handles_errors
def rollup(level: str, whole_buckets: bool, as_json: bool) -> None:
    """Run now, catching up every dirty closed bucket."""
    with open_trend() as trend:
        stop_on_signals(trend)
        reports = trend.rollup(level, whole_buckets=whole_buckets)
    if as_json:
        print_json(rollup_shape(reports))
    else:
        table = Table("level", "outcome", "buckets", "rows", "seconds")
        for r in reports:
            table.add_row(r.level, r.outcome, str(r.buckets), str(r.rows), f"{r.seconds:.3f}")
        console.print(table)
    if any(r.outcome == "failed" for r in reports):
        sys.exit(1)


@click.command()
@click.option("--start", required=True, help="ISO-8601 with a zone, epoch seconds, or now-<duration> (now-2h).")
@click.option("--end", required=True, help="ISO-8601 with a zone, epoch seconds, now, or now-<duration>.")
@json_option
@handles_errors
def backfill(start: str, end: str, as_json: bool) -> None:
    """Recompute every bucket of a range from the raw events."""
    start_ms, end_ms = cli_time("--start", start), cli_time("--end", end)
    with open_trend() as trend:
        stop_on_signals(trend)
        reports = trend.backfill(start_ms, end_ms)
    if as_json:
        print_json(rollup_shape(reports))
    else:
        console.print(f"backfilled {format_utc(start_ms)} to {format_utc(end_ms)}")
        for r in reports:
            console.print(f"  {r.level}: {r.outcome}, {r.buckets} buckets, {r.rows} rows, {r.seconds:.2f}s")


@click.command("erase-user")
@click.argument("user_id")
@json_option
@handles_errors
def erase_user(user_id: str, as_json: bool) -> None:
    """Delete one person's raw events and recompute every level without them (a privacy request)."""
    with open_trend() as trend:
        erased = trend.erase_user(user_id)
        reports = trend.rollup()
    if as_json:
        print_json({"user_id": user_id, "events": erased.events, "minutes": erased.minutes,
                     **rollup_shape(reports)})
    else:
        if not erased.events:
            console.print(f"no events of {user_id!r}: nothing erased, nothing recomputed", highlight=False)
            return
        console.print(f"erased {counted(erased.events, 'event')} of {user_id!r} from "
                      f"{counted(erased.minutes, 'minute')}; rollups recomputed. Older rollups keep counts and "
                      "hashed registers only.", highlight=False)


@click.command()
@json_option
@handles_errors
def status(as_json: bool) -> None:
    """Per level: the dirty backlog, the oldest dirty bucket, the last run and its outcome."""
    with open_trend() as trend:
        cluster = trend.cluster()
        shape = status_shape(trend.status(), trend.settings.zone, trend.database_info(), cluster)
    if as_json:
        print_json(shape)
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


