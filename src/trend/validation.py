"""Turn untrusted event payloads into :class:`~trend.model.EventRow`, or say exactly what is wrong."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, cast

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trend.config import parse_duration
from trend.errors import FieldProblem
from trend.model import (
    EVENT_MAX,
    ID_MAX,
    KEY_MAX,
    MAX_FUTURE_MS,
    SEGMENT_MAX,
    EventRow,
    format_duration,
    from_datetime,
)

# Checked inside pydantic-core: Python validators per field would halve ingest throughput.
_NO_NUL = r"^[^\x00]*$"
NUL_MESSAGE = "must not contain NUL characters"
NOT_UTF8 = "not valid UTF-8 text"
# A value's bound: integers up to it are exact in a double, and no sum of them can overflow one (the
# largest double is 1.8e308), so rollups and reads never meet an infinity or PostgreSQL's overflow.
VALUE_MAX = 1e15
VALUE_MESSAGE = "must be a finite number from -1e15 to 1e15"


class EventIn(BaseModel):
    """The JSON form of one event (the README's "Events"). Unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event: Annotated[str, Field(min_length=1, max_length=EVENT_MAX, pattern=_NO_NUL)]
    # Key and segment limits hold after normalization (EventValidator); these only bound the work.
    key: Annotated[str, Field(min_length=1, max_length=4 * KEY_MAX, pattern=_NO_NUL)]
    ts: int | None = None  # ms since the epoch, after the validator below
    segment: Annotated[str, Field(max_length=4 * SEGMENT_MAX, pattern=_NO_NUL)] = ""
    user_id: Annotated[str | None, Field(max_length=ID_MAX, pattern=_NO_NUL)] = None
    value: Annotated[float, Field(allow_inf_nan=False, ge=-VALUE_MAX, le=VALUE_MAX)] = 1.0
    event_id: Annotated[str | None, Field(max_length=ID_MAX, pattern=_NO_NUL)] = None

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any) -> int | None:
        return parse_time(value) if value is not None else None



def parse_moment(text: str, now_ms: int) -> int:
    """A time as people type it, the same on the command line and in a query string: ISO-8601 with a
    zone, epoch seconds, ``now``, or ``now-<duration>`` such as ``now-2h`` → ms since the epoch."""
    text = text.strip()
    if text == "now":
        return now_ms
    if text.startswith("now-"):
        return now_ms - parse_duration(text[4:])
    try:
        number = float(text)
    except ValueError:
        return parse_time(text)
    return parse_time(number)


def parse_time(value: Any) -> int:
    """ISO-8601 with a zone, or epoch seconds as a number → ms since the epoch."""
    kind = type(value)
    if kind is float or kind is int:  # the common case first: bulk ingest parses one per line
        if not -1e11 <= value <= 1e11:  # NaN and the infinities fail this too
            raise ValueError("epoch seconds out of range")
        return round(float(value) * 1000)
    if isinstance(value, bool):
        raise ValueError("expected ISO-8601 with a zone or epoch seconds, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 1e11:
            raise ValueError("epoch seconds out of range")
        return round(value * 1000)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected ISO-8601 with a zone or epoch seconds, got {value[:40]!r}") from None
        if moment.tzinfo is None:
            raise ValueError("ISO-8601 time needs a zone, e.g. 2025-11-13T06:51:00Z or +09:00")
        try:
            return from_datetime(moment)
        except OverflowError:  # 9999-12-31T23:00-14:00 is past what a datetime can hold in UTC
            raise ValueError("time out of range") from None
    raise ValueError("expected ISO-8601 with a zone or epoch seconds")


class EventValidator:
    """Validates payloads against the schema and the accepted time range at ``now``."""

    def __init__(self, accepted_lateness_ms: int, normalize: Callable[[str], str] = lambda text: text) -> None:
        self.accepted_lateness_ms = accepted_lateness_ms
        self.normalize = normalize

    def validate(self, payload: Any, position: int, now_ms: int) -> EventRow | FieldProblem:
        if not isinstance(payload, Mapping):
            return FieldProblem(position, "", "an event must be a JSON object")
        try:
            parsed = EventIn.model_validate(payload)
        except ValidationError as exc:
            return _problem(exc, position)
        return self._finish(parsed.ts, parsed.event, parsed.key, parsed.segment, parsed.user_id,
                            float(parsed.value), parsed.event_id, position, now_ms)

    def validate_line(self, text: str, position: int, now_ms: int) -> EventRow | FieldProblem:
        """One line of JSON text. A line that is plainly valid is decoded and checked in msgspec; any
        other goes through :meth:`validate`, which says exactly what is wrong."""
        try:
            fast = _fast_fields(text)
        except UnicodeEncodeError:  # bytes that are not UTF-8, kept as surrogates when the file was read
            return FieldProblem(position, "", NOT_UTF8)
        if fast is not None:
            return self._finish(*fast, position, now_ms)
        try:
            payload = loads_strict(text)
        except (ValueError, RecursionError) as exc:
            return FieldProblem(position, "", f"not valid JSON: {exc}")
        return self.validate(payload, position, now_ms)

    def _finish(self, ts: int | None, event: str, raw_key: str, raw_segment: str, user_id: str | None,
                value: float, event_id: str | None, position: int, now_ms: int) -> EventRow | FieldProblem:
        """The checks after the schema: time range and normalized lengths."""
        if ts is None:
            ts = now_ms
        if ts < now_ms - self.accepted_lateness_ms:
            return FieldProblem(position, "ts", "older than the accepted lateness "
                                f"(TREND_ACCEPTED_LATENESS={format_duration(self.accepted_lateness_ms)})")
        if ts > now_ms + MAX_FUTURE_MS:
            return FieldProblem(position, "ts", "more than 5 minutes in the future")
        key = self.normalize(raw_key)
        if not key:
            return FieldProblem(position, "key", "is empty after normalization (TREND_KEY_NORMALIZATION)")
        if len(key) > KEY_MAX:
            return FieldProblem(position, "key", f"longer than {KEY_MAX} characters after normalization")
        segment = self.normalize(raw_segment)
        if len(segment) > SEGMENT_MAX:
            return FieldProblem(position, "segment", f"longer than {SEGMENT_MAX} characters after normalization")
        # An empty id is no id: "" as an idempotency key would make every later event with it a
        # duplicate, and as a user one more distinct person.
        return EventRow(ts, event, key, segment, user_id or None, value, event_id or None)

    def finish_all(self, fields: Sequence[DecodedEvent], now_ms: int) -> tuple[list[EventRow], list[FieldProblem]]:
        """:meth:`validate_all` for events :func:`fast_batch` decoded: only the checks after the schema."""
        return split_outcomes(self._finish(*one, position, now_ms) for position, one in enumerate(fields))

    def validate_all(self, payloads: Iterable[Any], now_ms: int, first_position: int = 0
                     ) -> tuple[list[EventRow], list[FieldProblem]]:
        return split_outcomes(self.validate(payload, position, now_ms)
                              for position, payload in enumerate(payloads, start=first_position))


def split_outcomes(outcomes: Iterable[EventRow | FieldProblem]) -> tuple[list[EventRow], list[FieldProblem]]:
    """The valid rows and the problems, each in the order given."""
    rows: list[EventRow] = []
    problems: list[FieldProblem] = []
    for outcome in outcomes:
        if isinstance(outcome, FieldProblem):
            problems.append(outcome)
        else:
            rows.append(outcome)
    return rows, problems

class _Wire(msgspec.Struct, forbid_unknown_fields=True):
    """The fast decoder's view of an event: the types and lengths of :class:`EventIn`, checked in msgspec
    (lengths count characters in both); :func:`_fast_fields` checks the rest."""

    event: Annotated[str, msgspec.Meta(min_length=1, max_length=EVENT_MAX)]
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=4 * KEY_MAX)]
    ts: int | float | str | msgspec.UnsetType | None = msgspec.UNSET
    segment: Annotated[str, msgspec.Meta(max_length=4 * SEGMENT_MAX)] | msgspec.UnsetType = msgspec.UNSET
    user_id: Annotated[str, msgspec.Meta(max_length=ID_MAX)] | msgspec.UnsetType | None = msgspec.UNSET
    value: float | msgspec.UnsetType = msgspec.UNSET
    event_id: Annotated[str, msgspec.Meta(max_length=ID_MAX)] | msgspec.UnsetType | None = msgspec.UNSET


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[_Wire]


_WIRE = msgspec.json.Decoder(_Wire)
_WIRES = msgspec.json.Decoder(list[_Wire] | _Batch)
# An event decoded by the fast path: ts (None: now), event, key, segment, user_id, value, event_id.
DecodedEvent = tuple[int | None, str, str, str, str | None, float, str | None]


def _fast_fields(text: str) -> DecodedEvent | None:
    """The fields of a line that :class:`EventIn` would accept as they are, or None for anything else
    (which then gets the full check and its message). It must never accept what EventIn refuses."""
    try:
        wire = _WIRE.decode(text)
    except msgspec.DecodeError:
        return None
    return _checked(wire) if _plain(text, _present(wire)) else None


def fast_batch(body: bytes) -> list[DecodedEvent] | None:
    """A request body that is an array of events, or ``{"events": [...]}``, each plainly valid: their
    fields; None for anything else, which then takes the full check."""
    try:
        text = body.decode("utf-8")
        decoded = _WIRES.decode(text)
    except (UnicodeDecodeError, msgspec.DecodeError):
        return None
    wires, keys = (decoded.events, 1) if isinstance(decoded, _Batch) else (decoded, 0)
    if not _plain(text, keys + sum(_present(wire) for wire in wires)):
        return None
    fields = [_checked(wire) for wire in wires]
    return None if any(one is None for one in fields) else cast(list[DecodedEvent], fields)


def _present(wire: _Wire) -> int:
    """How many keys the object had: msgspec says which fields were given, not how often."""
    U = msgspec.UNSET  # noqa: N806
    return 2 + (wire.ts is not U) + (wire.segment is not U) + (wire.user_id is not U) + (wire.value is not U) \
        + (wire.event_id is not U)


def _plain(text: str, keys: int) -> bool:
    """Whether ``text`` wrote each of its ``keys`` keys once, as `"name":`. msgspec keeps the last of
    a key given twice, which the spec refuses; `" ` and friends would allow `"name" :` unseen, and
    `\u0000` a NUL character."""
    return (text.count('":') == keys and '" ' not in text and '"\t' not in text and '"\r' not in text
            and '"\n' not in text and "\\u0000" not in text)


def _checked(wire: _Wire) -> DecodedEvent | None:
    """The limits of :class:`EventIn` that msgspec does not check; None where the event breaks one."""
    U = msgspec.UNSET  # noqa: N806
    value = 1.0 if wire.value is U else wire.value
    if not -VALUE_MAX <= value <= VALUE_MAX:  # NaN fails this too
        return None
    ts = None
    if wire.ts is not U and wire.ts is not None:
        try:
            ts = parse_time(wire.ts)
        except ValueError:
            return None
    return (ts, wire.event, wire.key, "" if wire.segment is U else wire.segment,
            None if wire.user_id is U else wire.user_id, float(value), None if wire.event_id is U else wire.event_id)


def _problem(exc: ValidationError, position: int) -> FieldProblem:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required"
    elif error["type"] == "string_pattern_mismatch":
        message = NUL_MESSAGE
    elif error["type"] in ("finite_number", "greater_than_equal", "less_than_equal"):
        message = VALUE_MESSAGE
    return FieldProblem(position, field, message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def loads_strict(text: str) -> Any:
    """JSON as the spec has it: no NaN or Infinity, and no key twice in one object."""
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
