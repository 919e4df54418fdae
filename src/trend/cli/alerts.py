"""``trend alerts``: webhook alert rules and their deliveries."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from trend.cli.common import (
    by_option,
    console,
    err_console,
    event_option,
    handles_errors,
    json_option,
    open_trend,
    print_json,
    segment_option,
    window_choice,
)
from trend.errors import InputError
from trend.model import isoformat
from trend.shapes import delivery_shape, rule_shape


@click.group()
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
@click.option("--score", type=click.Choice(["poisson", "zscore"]), default=None,
              help="rising: how keys are scored (default poisson; zscore as earlier releases did).")
@click.option("--min-score", type=float, default=None,
              help="rising: the score to reach (default 5 for poisson, 3 for zscore).")
@click.option("--min-count", type=click.IntRange(1), default=None, help="rising: at least this many (default 5).")
@click.option("--top", type=click.IntRange(1, 100), default=None, help="enters_top: the size of the top.")
@click.option("--threshold", type=click.IntRange(1), default=None, help="threshold: the value to cross.")
@click.option("--url", required=True, help="The webhook: http:// or https://.")
@click.option("--secret", default=None,
              help="The signing secret: whsec_ (optional) and the base64 of at least 16 bytes; made when omitted.")
@click.option("--cooldown", default="1h", show_default=True, help="The least time between two firings per key.")
@json_option
@handles_errors
def alerts_add(as_json: bool, **rule: Any) -> None:
    """Add a rule. Its secret is shown this once."""
    with open_trend() as trend:
        added = trend.add_alert(**{k: v for k, v in rule.items() if v is not None})
        zone = trend.settings.zone
    if as_json:  # the same shapes as HTTP: times in ISO-8601 in TREND_TIMEZONE
        print_json(rule_shape(added, zone))
    else:
        console.print(f"alert {added['id']} added; its secret (shown once, it signs every delivery): "
                      f"{added['secret']}", highlight=False)
    if added.get("warning"):
        err_console.print(f"warning: {added['warning']}", highlight=False, markup=False)


@alerts.command("list")
@json_option
@handles_errors
def alerts_list(as_json: bool) -> None:
    """Every rule, without its secret."""
    with open_trend() as trend:
        rules = trend.alert_rules()
        zone = trend.settings.zone
    if as_json:
        print_json({"rules": [rule_shape(rule, zone) for rule in rules]})
        return
    table = Table("id", "name", "event", "segment", "condition", "window", "by", "url", "cooldown s", "last error")
    for rule in rules:
        table.add_row(str(rule["id"]), rule["name"], rule["event"], rule["segment"] or "(all)",
                      _condition_text(rule), rule["window"], rule["by"], rule["url"], str(rule["cooldown_seconds"]),
                      rule["last_error"] or "-")
    console.print(table)


def _condition_text(rule: dict[str, Any]) -> str:
    """The condition with what it compares: every figure that decides when the rule fires."""
    if rule["condition"] == "rising":
        return f"rising: {rule.get('score') or 'zscore'} ≥ {rule['min_score']:g}, count ≥ {rule['min_count']}"
    if rule["condition"] == "enters_top":
        return f"enters top {rule['top']}"
    return f"threshold: {rule['key']} crosses {rule['threshold']}"


@alerts.command("remove")
@click.argument("rule_id", type=int)
@json_option
@handles_errors
def alerts_remove(rule_id: int, as_json: bool) -> None:
    """Remove a rule."""
    with open_trend() as trend:
        if not trend.remove_alert(rule_id):
            raise InputError(f"no alert rule {rule_id}")
    if as_json:
        print_json({"id": rule_id, "removed": True})
    else:
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
    with open_trend() as trend:
        delivery = trend.test_alert(rule_id)
        if delivery is None:
            raise InputError(f"no alert rule {rule_id}")
        if as_json:
            print_json(delivery_shape(delivery, trend.settings.zone))
        else:
            _delivery_table([delivery], trend.settings.zone)
    if delivery["status"] != "delivered":
        sys.exit(1)  # a script that tests its receiver must see that it failed


@alerts.command("deliveries")
@click.argument("rule_id", type=int)
@json_option
@handles_errors
def alerts_deliveries(rule_id: int, as_json: bool) -> None:
    """The rule's deliveries, newest first."""
    with open_trend() as trend:
        found = trend.alert_deliveries(rule_id)
        if found is None:
            raise InputError(f"no alert rule {rule_id}")
        if as_json:
            print_json({"deliveries": [delivery_shape(d, trend.settings.zone) for d in found]})
        else:
            _delivery_table(found, trend.settings.zone)
