"""What to do with a server's answer to one batch: pure decisions, shared by both clients."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx

# The answers after which the same batch may simply be sent again: the server was busy, restarting or
# unreachable. Every event carries its event_id, so a batch it did store is then counted as duplicates.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_WAIT_SECONDS = 30.0  # the longest backoff, and the most of a Retry-After that is obeyed


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # the whole batch again, after a wait
    SPLIT = "split"  # too large for the server: in halves
    DROP_INVALID = "drop_invalid"  # the server named the bad events: the rest again, at once
    FAIL = "fail"  # a refusal that sending again cannot change (a wrong key)


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    accepted: int = 0
    duplicates: int = 0
    invalid: frozenset[int] = frozenset()  # positions in the batch, for DROP_INVALID
    reasons: dict[int, str] = field(default_factory=dict)  # each invalid position's own reason
    reason: str = ""
    retry_after: float | None = None


def judge(response: httpx.Response) -> Outcome:
    """The verdict on the server's answer to one batch."""
    status = response.status_code
    if status == 202:
        body = response.json()
        return Outcome(Verdict.DELIVERED, accepted=int(body["accepted"]), duplicates=int(body["duplicates"]))
    reason = f"{status} {_message(response)}"
    if status in RETRY_STATUSES:
        return Outcome(Verdict.RETRY, reason=reason, retry_after=_retry_after(response))
    if status == 413:
        return Outcome(Verdict.SPLIT, reason=reason)
    if status == 422:
        reasons = _reasons(response)
        if reasons:
            return Outcome(Verdict.DROP_INVALID, invalid=frozenset(reasons), reasons=reasons, reason=reason)
    return Outcome(Verdict.FAIL, reason=reason)


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds before attempt ``attempt`` + 1: the server's Retry-After when it gave one, else
    exponential from 0.1 s with full jitter (so many clients do not come back at once)."""
    if retry_after is not None:
        return min(retry_after, MAX_WAIT_SECONDS)
    return random.uniform(0, min(MAX_WAIT_SECONDS, 0.1 * 2 ** attempt))


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _message(response: httpx.Response) -> str:
    return str(_error(response).get("message", response.reason_phrase))[:300]


def _reasons(response: httpx.Response) -> dict[int, str]:
    """The batch positions a 422 names, each with its own ``422 field: message``: every listed
    problem's, or the first error's."""
    error = _error(response)
    listed = [p for p in error.get("problems", []) if isinstance(p, dict)] or [error]
    # A list that stops at its cap may leave bad events unnamed; they fail the next try, and are named then.
    return {p["index"]: f"422 {p.get('field') or 'event'}: {p.get('message', '')}"[:300]
            for p in listed if isinstance(p.get("index"), int)}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


VALUE_MAX = 1e15  # the server's bound on a value
_TEXT_LIMITS = {"event": (1, 64), "key": (1, 1024), "segment": (0, 256), "user_id": (0, 128), "event_id": (1, 128)}


def local_problem(record: dict[str, Any]) -> str | None:
    """``field: why`` for an event the server would refuse whatever happens, checked before it is
    queued; None when it may be sent (the server's answer then judges the rest, such as a key that is
    empty once normalized)."""
    for name, (least, most) in _TEXT_LIMITS.items():
        text = record.get(name)
        if text is None and name not in ("event", "key"):
            continue
        if not isinstance(text, str):
            return f"{name}: expected a string, got {type(text).__name__}"
        if not least <= len(text) <= most or "\x00" in text:
            return f"{name}: expected {least} to {most} characters and no NUL, got {len(text)}"
        if not text.isascii() and not _encodable(text):
            return f"{name}: not valid Unicode text (a lone surrogate)"
    value, ts = record["value"], record["ts"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not -VALUE_MAX <= value <= VALUE_MAX:
        return f"value: expected a number from -1e15 to 1e15, got {_shown(value)}"
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not -1e11 <= ts <= 1e11:
        return f"ts: expected epoch seconds, got {_shown(ts)}"
    return None


def _shown(given: Any) -> str:
    """``given`` as a reason may show it: short, and never an error (Python refuses to turn an int of
    more than 4,300 digits into text)."""
    if isinstance(given, int) and not isinstance(given, bool) and given.bit_length() > 64:
        return f"an integer of {given.bit_length()} bits"
    try:
        text = repr(given)
    except Exception:
        text = f"a {type(given).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class ClientStats:
    """What became of the events given to ``track()``, counted since the client started."""

    queued: int = 0  # accepted by track() into the queue
    delivered: int = 0  # stored by the server, duplicates included: the server has them
    duplicates: int = 0  # of delivered, those the server already had (a retry of a stored batch)
    dropped: int = 0  # refused by track(): the queue was full (the newest event is the one dropped)
    invalid: int = 0  # refused as invalid, by track() itself or by the server (422); never sent again
    failed: int = 0  # given up: retries used up, a refusal such as a wrong key, or unsent at close()
    retries: int = 0  # batches sent again after an error
    last_error: str | None = field(default=None)

    def copy(self) -> ClientStats:
        return ClientStats(**vars(self))
