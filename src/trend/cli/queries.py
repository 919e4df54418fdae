"""``trend top``, ``trend rising`` and ``trend series``: the reads, as tables or JSON."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from trend import measures
from trend.cli.common import (
    at_option,
    by_option,
    console,
    counted,
    err_console,
    event_option,
    handles_errors,
    json_option,
    limit_option,
    open_trend,
    optional_time,
    print_json,
    segment_option,
    users_text,
    window_choice,
)
from trend.model import LEVELS
from trend.shapes import rising_shape, series_shape, top_shape


@click.command()
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
    with open_trend() as trend:
        shape = top_shape(trend.top(event, segment=segment, window=window, at_ms=optional_time("--at", at),
                                    limit=limit, by=by), trend.settings.zone)
    if as_json:
        print_json(shape)
        return
    others = measures.other_rankings()
    table = Table("rank", "key", "count", "users", *others, "change",
                  title=f"top {event}{segment_title(segment)} by {by} over {window} to {shape['end']}")
    for item in shape["items"]:
        change = "NEW" if item["is_new"] else f"{item['rank_change']:+d}" if item["rank_change"] else "="
        table.add_row(str(item["rank"]), item["key"], str(item["count"]), users_text(item["users"]),
                      *(str(item[name]) for name in others), change)
    console.print(table)
    _hint_when_empty(shape["items"], event)


def segment_title(segment: str | None) -> str:
    return f" in segment {segment}" if segment else ""


def _hint_when_empty(items: list[Any], event: str) -> None:
    if not items:
        err_console.print(f"no {event} events in this window. Send some (trend ingest FILE, POST /v1/events), "
                          "or try trend demo for sample data.", highlight=False)


@click.command()
@event_option
@segment_option
@click.option("--window", type=window_choice, default="15m", show_default=True)
@click.option("--baseline", default=12, show_default=True, type=click.IntRange(1, 48),
              help="How many windows before the current one form the baseline.")
@click.option("--min-count", default=5, show_default=True, type=click.IntRange(1),
              help="Only keys with at least this many (events, or people with --by users) in the window are "
                   "scored: a few events are noise.")
@click.option("--score", type=click.Choice(["poisson", "zscore"]), default="poisson", show_default=True,
              help="poisson: a key's share of the stream against its share before, so a surge of everybody "
                   "moves no key; zscore: a key against its own past only, as earlier releases scored.")
@at_option
@limit_option
@by_option
@json_option
@handles_errors
def rising(event: str, segment: str | None, window: str, baseline: int, min_count: int, score: str,
           at: str | None, limit: int, by: str, as_json: bool) -> None:
    """Keys rising fastest against the windows before (docs/queries.md has the formulas)."""
    with open_trend() as trend:
        result = trend.rising(event, segment=segment, window=window, baseline=baseline, min_count=min_count,
                              at_ms=optional_time("--at", at), limit=limit, by=by, score=score)
        shape = rising_shape(result, trend.settings.zone)
    if as_json:
        print_json(shape)
        return
    others = measures.other_rankings()
    table = Table("rank", "key", "count", "users", *others, "expected", "score", "growth %",
                  title=f"rising {event}{segment_title(segment)} by {by} over {window} to {shape['end']}")
    for item in shape["items"]:
        table.add_row(str(item["rank"]), item["key"], str(item["count"]), users_text(item["users"]),
                      *(str(item[name]) for name in others), f"{item['baseline']:.1f}", f"{item['score']:.2f}",
                      _growth(item))
    console.print(table)
    if shape["baseline_partial"]:
        console.print(f"Less history than the {shape['baseline_windows']} windows of the baseline: scores compare "
                      "with what there is, growth is not shown.", highlight=False)
    if shape["below_min_count"]:
        console.print(f"{counted(shape['below_min_count'], 'more key')} with {event} events now, fewer than "
                      f"{min_count} each: too few to score (--min-count).", highlight=False)
    elif not shape["items"]:
        _hint_when_empty(shape["items"], event)


def _growth(item: dict[str, Any]) -> str:
    """As the dashboard: a key with nothing in its baseline is a breakout, and a growth against a
    baseline older than the data is against zeros that are not history (+85600 %): not shown."""
    if item["baseline_partial"] or (item["growth_pct"] is None and not item["breakout"]):
        return "–"  # a short history: a key is not new, only unknown
    return "breakout" if item["breakout"] else f"{item['growth_pct']:+.0f}"


@click.command()
@event_option
@click.option("--key", "keys", multiple=True, help="A key; repeat to compare up to 5. Every key together when omitted.")
@segment_option
@click.option("--interval", type=click.Choice(LEVELS.names), default=LEVELS.finest.name, show_default=True)
@click.option("--start", default=None, help="ISO-8601 with a zone, epoch seconds, or now-<duration> (now-2h); "
                                            "default the interval's chart span before --end.")
@click.option("--end", default=None, help="ISO-8601 with a zone, epoch seconds, now or now-<duration>; default now.")
@click.option("--compare", type=click.Choice(["previous"]), default=None,
              help="Add the period before, aligned point by point.")
@json_option
@handles_errors
def series(event: str, keys: tuple[str, ...], segment: str | None, interval: str, start: str | None,
           end: str | None, compare: str | None, as_json: bool) -> None:
    """One point per bucket of the interval, zero-filled."""
    with open_trend() as trend:
        result = trend.series(event, key=list(keys) if keys else None, segment=segment, interval=interval,
                              start_ms=optional_time("--start", start), end_ms=optional_time("--end", end),
                              compare=compare)
        shape = series_shape(result, trend.settings.zone)
    if as_json:
        print_json(shape)
        return
    shown = [m.read_as for m in measures.shown()]  # one column per measure a point shows
    for line in shape["series"]:
        previous = line["previous"] or [None] * len(line["points"])
        table = Table("time", *shown, *(["previous count"] if compare else []),
                      title=f"{event} {line['key'] or '(all keys)'}{segment_title(segment)} per {interval}")
        for point, before in zip(line["points"], previous, strict=True):
            table.add_row(point["t"], *(_figure(point[name]) for name in shown),
                          *([str(before["count"])] if before is not None else []))
        console.print(table)


def _figure(value: float | None) -> str:
    """A measure in a table: whole numbers as they are, others as short as they go, unknown as -."""
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


