"""What an alert rule is, and how one is checked before it is stored: pure, no I/O."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from trend.config import parse_duration
from trend.errors import QueryError
from trend.query.windows import WINDOWS

CONDITIONS = ("rising", "enters_top", "threshold")
MAX_COOLDOWN_MS = 365 * 86_400_000
BYS = ("count", "users")
DEFAULTS: dict[str, Any] = {"segment": None, "by": "count", "window": "15m", "key": None, "min_score": None,
                            "min_count": None, "top": None, "threshold": None, "cooldown": "1h", "secret": None}


def checked_rule(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The stored fields of a rule from what a person gave, or a QueryError naming the field.

    ``rising`` fires for keys whose z-score reaches ``min_score`` (default 3) with at least
    ``min_count`` (default 5); ``enters_top`` for keys that enter the top ``top``; ``threshold`` when
    ``key``'s value over the window crosses ``threshold`` upwards."""
    unknown = set(spec) - {*DEFAULTS, "name", "event", "condition", "url"}
    if unknown:
        raise QueryError(sorted(unknown)[0], "unknown field")
    rule = {**DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    for field, value in rule.items():
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold it
            raise QueryError(field, "must not contain NUL characters")
    for field, most in (("min_count", 10**12), ("threshold", 10**15)):
        if isinstance(rule[field], int) and not 1 <= rule[field] <= most:
            raise QueryError(field, f"expected a whole number from 1 to {most}")
    for field in ("event", "condition", "url"):
        if not isinstance(rule.get(field), str) or not rule[field]:
            raise QueryError(field, "required")
    if rule["condition"] not in CONDITIONS:
        raise QueryError("condition", f"expected one of {', '.join(CONDITIONS)}; got {rule['condition']!r}")
    if rule["by"] not in BYS:
        raise QueryError("by", f"expected count or users; got {rule['by']!r}")
    if rule["window"] not in WINDOWS:
        raise QueryError("window", f"expected one of {', '.join(WINDOWS)}; got {rule['window']!r}")
    parts = urlsplit(rule["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueryError("url", "expected an http:// or https:// URL with a host")
    if rule["condition"] == "rising":
        rule["min_score"] = float(rule["min_score"] if rule["min_score"] is not None else 3.0)
        rule["min_count"] = int(rule["min_count"] if rule["min_count"] is not None else 5)
    elif rule["condition"] == "enters_top":
        if not isinstance(rule["top"], int) or not 1 <= rule["top"] <= 100:
            raise QueryError("top", "enters_top needs top, a whole number from 1 to 100")
    elif not isinstance(rule["key"], str) or not rule["key"] or not isinstance(rule["threshold"], int) \
            or rule["threshold"] < 1:
        raise QueryError("threshold", "threshold needs key and threshold, a whole number of at least 1")
    try:
        rule["cooldown_ms"] = parse_duration(rule.pop("cooldown"))
    except ValueError as exc:
        raise QueryError("cooldown", str(exc)) from None
    if not 0 < rule["cooldown_ms"] <= MAX_COOLDOWN_MS:
        raise QueryError("cooldown", "expected a duration from 1s to 365d")
    # A secret is made when none is given; either way it is shown once, at creation.
    rule["secret"] = rule["secret"] or secrets.token_urlsafe(24)
    if len(rule["secret"]) < 16:
        raise QueryError("secret", "use at least 16 characters")
    rule["name"] = rule.get("name") or f"{rule['event']} {rule['condition']}"
    return rule


def public(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule as reads show it: never its secret, nor the evaluator's bookkeeping."""
    hidden = {"secret", "last_minute", "last_state", "cooldown_ms"}
    return {**{k: v for k, v in rule.items() if k not in hidden}, "cooldown_seconds": rule["cooldown_ms"] // 1000}


def backoff_ms(attempts: int, base_ms: int) -> int:
    """The wait before the next attempt: base, then doubling, at most an hour."""
    return int(min(base_ms * 2 ** (attempts - 1), 3_600_000))
