"""What an alert rule is, and how one is checked before it is stored: pure, no I/O."""

from __future__ import annotations

import base64
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from trend import measures
from trend.alerts.webhook import UnusableSecretError, signing_key
from trend.config import parse_duration
from trend.errors import QueryError
from trend.query.windows import WINDOWS

CONDITIONS = ("rising", "enters_top", "threshold")
MAX_COOLDOWN_MS = 365 * 86_400_000
MAX_SCORE = 1e6
DEFAULTS: dict[str, Any] = {"segment": None, "by": "count", "window": "15m", "key": None, "min_score": None,
                            "min_count": None, "top": None, "threshold": None, "cooldown": "1h", "secret": None,
                            "score": None}
# A rising rule's default min_score for each score: about one false alarm a day or fewer on a stream of
# 2,000 keys with no burst (bench/rising_quality.py, docs/benchmarks.md).
DEFAULT_MIN_SCORE = {"poisson": 5.0, "zscore": 3.0}
SCORES = tuple(DEFAULT_MIN_SCORE)


def checked_rule(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The stored fields of a rule from what a person gave, or a QueryError naming the field.

    ``rising`` fires for keys whose ``score`` (poisson, the default; or zscore, the score of earlier
    releases) reaches ``min_score`` (default 5 for poisson, 3 for zscore) with at least ``min_count``
    (default 5); ``enters_top`` for keys that enter the top ``top``; ``threshold`` when
    ``key``'s value over the window crosses ``threshold`` upwards."""
    unknown = set(spec) - {*DEFAULTS, "name", "event", "condition", "url"}
    if unknown:
        raise QueryError(sorted(unknown)[0], "unknown field")
    rule = {**DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    _check_fields(rule)
    _CONDITION_CHECKS[rule["condition"]](rule)
    rule["cooldown_ms"] = _cooldown_ms(rule.pop("cooldown"))
    # A secret is made when none is given, in the Standard Webhooks form (whsec_ and base64), so the
    # convention's libraries take it as it is; either way it is shown once, at creation.
    rule["secret"] = rule["secret"] or "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    if not isinstance(rule["secret"], str):
        raise QueryError("secret", "expected a string")
    try:
        signing_key(rule["secret"])
    except UnusableSecretError as exc:
        raise QueryError("secret", str(exc)) from None
    rule["name"] = rule.get("name") or f"{rule['event']} {rule['condition']}"
    return rule


def _check_fields(rule: Mapping[str, Any]) -> None:
    """What every rule needs, whatever its condition."""
    for field, value in rule.items():
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold it
            raise QueryError(field, "must not contain NUL characters")
    for field, most in (("min_count", 10**12), ("threshold", 10**15)):
        if isinstance(rule[field], int) and not 1 <= rule[field] <= most:
            raise QueryError(field, f"expected a whole number from 1 to {most}")
    for field in ("event", "condition", "url"):
        if not isinstance(rule.get(field), str) or not rule[field]:
            raise QueryError(field, "required")
    _one_of("condition", rule["condition"], CONDITIONS)
    _one_of("by", rule["by"], measures.rankings())
    _one_of("window", rule["window"], list(WINDOWS))
    try:
        parts = urlsplit(rule["url"])
        port = parts.port  # reading it checks it: a ValueError for :99999, :abc
    except ValueError as exc:
        problem = "the port must be a number from 1 to 65535" if "ort" in str(exc) else str(exc)
        raise QueryError("url", f"not a URL: {problem}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueryError("url", "expected an http:// or https:// URL with a host")
    if port == 0:
        raise QueryError("url", "not a URL: the port must be a number from 1 to 65535")


def _one_of(field: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise QueryError(field, f"expected one of {', '.join(choices)}; got {value!r}")


def _rising(rule: dict[str, Any]) -> None:
    rule["score"] = rule["score"] or "poisson"
    _one_of("score", rule["score"], SCORES)
    score = rule["min_score"] if rule["min_score"] is not None else DEFAULT_MIN_SCORE[rule["score"]]
    try:
        score = float(score)
    except (TypeError, ValueError):
        raise QueryError("min_score", "expected a number") from None
    # NaN would be stored as NULL on SQLite and never compare true on PostgreSQL: refused, as infinity.
    if not math.isfinite(score) or not -MAX_SCORE <= score <= MAX_SCORE:
        raise QueryError("min_score", f"expected a finite number from {-MAX_SCORE:g} to {MAX_SCORE:g}")
    rule["min_score"] = score
    rule["min_count"] = int(rule["min_count"] if rule["min_count"] is not None else 5)


def _enters_top(rule: dict[str, Any]) -> None:
    if not isinstance(rule["top"], int) or not 1 <= rule["top"] <= 100:
        raise QueryError("top", "enters_top needs top, a whole number from 1 to 100")


def _threshold(rule: dict[str, Any]) -> None:
    if not isinstance(rule["key"], str) or not rule["key"] or not isinstance(rule["threshold"], int) \
            or rule["threshold"] < 1:
        raise QueryError("threshold", "threshold needs key and threshold, a whole number of at least 1")


_CONDITION_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "rising": _rising, "enters_top": _enters_top, "threshold": _threshold}


def _cooldown_ms(text: Any) -> int:
    try:
        found = parse_duration(text)
    except ValueError as exc:
        raise QueryError("cooldown", str(exc)) from None
    if not 0 < found <= MAX_COOLDOWN_MS:
        raise QueryError("cooldown", "expected a duration from 1s to 365d")
    return found


def public(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule as reads show it: never its secret, nor the evaluator's bookkeeping."""
    hidden = {"secret", "last_minute", "last_state", "cooldown_ms"}
    return {**{k: v for k, v in rule.items() if k not in hidden}, "cooldown_seconds": rule["cooldown_ms"] // 1000}


def backoff_ms(attempts: int, base_ms: int) -> int:
    """The wait before the next attempt: base, then doubling, at most an hour."""
    return int(min(base_ms * 2 ** (attempts - 1), 3_600_000))
