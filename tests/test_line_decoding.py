"""Bulk ingest decodes plainly valid lines in msgspec and sends every other line through the full
check (docs/ingest.md). The two must agree on every line: the fast path may only accept what the
full check accepts, with the same fields."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import T0
from trend.errors import FieldProblem
from trend.keys import normalizer
from trend.model import DAY_MS, EventRow
from trend.validation import EventValidator, fast_batch, loads_strict

VALIDATOR = EventValidator(7 * DAY_MS, normalizer("nfkc_casefold"))
FIELDS = ["event", "key", "ts", "segment", "user_id", "value", "event_id"]


def full_check(text: str) -> EventRow | FieldProblem:
    """What every line went through before the fast path: json with the spec's rules, then pydantic."""
    try:
        payload = loads_strict(text)
    except (ValueError, RecursionError) as exc:
        return FieldProblem(1, "", f"not valid JSON: {exc}")
    return VALIDATOR.validate(payload, 1, T0)


texts = st.one_of(st.text(max_size=12), st.sampled_from(["search", "우산", " a ", "a\x00b", "x" * 70, "x" * 1100,
                                                         # one past each limit of EventIn
                                                         "x" * 65, "x" * 129, "x" * 257, "x" * 1025,
                                                         "2025-11-13T06:51:00Z", "2025-11-13T06:51:00",
                                                         "2025-11-13 15:51:00+09:00", '"', "\\u0000"]))
values = st.one_of(texts, st.none(), st.booleans(), st.integers(-10**12, 10**12),
                   st.floats(allow_nan=False, allow_infinity=False), st.just(T0 / 1000), st.just(1e400),
                   st.lists(st.integers(), max_size=2))
# Mostly the known fields with plausible values, so that many lines are valid and take the fast path.
plausible = st.fixed_dictionaries({}, optional={
    "ts": st.one_of(st.just(T0 / 1000), st.just(T0 // 1000), st.just("2025-11-13T06:50:00.5Z"), values),
    "segment": st.one_of(st.just("kr"), texts), "user_id": st.one_of(st.just("u1"), st.none(), texts),
    "value": st.one_of(st.floats(-1e9, 1e9), st.integers(-5, 5), values),
    "event_id": st.one_of(st.just("e-1"), st.none(), texts)})
objects = st.one_of(plausible, plausible, st.dictionaries(st.sampled_from([*FIELDS, "other", "Event"]), values,
                                                          max_size=8))
layouts = st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : "), (",", " :"), (",\t", ":\t")])


@st.composite
def lines(draw: st.DrawFn) -> str:
    payload: dict[str, Any] = {"event": draw(st.sampled_from(["search", "view"])), "key": draw(texts)}
    if draw(st.integers(0, 9)) == 0:
        payload = {}
    payload.update(draw(objects))
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()), separators=draw(layouts))
    if payload and draw(st.integers(0, 4)) == 0:  # the same key twice, which the spec refuses
        name = draw(st.sampled_from(sorted(payload)))
        spacing = draw(st.sampled_from(["", " "]))
        text = "{" + json.dumps(name) + spacing + ":" + json.dumps(draw(values)) + "," + text[1:]
    return text


@settings(max_examples=1500, deadline=None)
@given(lines())
def test_the_fast_path_agrees_with_the_full_check(text: str) -> None:
    assert VALIDATOR.validate_line(text, 1, T0) == full_check(text)


def test_a_key_given_twice_is_refused_however_it_is_spaced() -> None:
    for text in ['{"event":"a","key":"k","key":"j"}', '{"event":"a", "event" :"b","key":"k"}',
                 '{"event":"a","\\u006bey":"k","key":"j"}']:
        outcome = VALIDATOR.validate_line(text, 7, T0)
        assert isinstance(outcome, FieldProblem), text
        assert outcome.position == 7
        assert "duplicate key" in outcome.message


@st.composite
def plain_lines(draw: st.DrawFn) -> str:
    """Events most clients send: known fields, ordinary values; some still break a limit or the window."""
    words = st.text(st.sampled_from("abcxyz우산 -_"), min_size=0, max_size=8)
    payload: dict[str, Any] = {"event": draw(st.sampled_from(["search", "view", ""])), "key": draw(words)}
    payload.update(draw(plausible))
    return json.dumps(payload, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([(",", ":"),
                                                                                                (", ", ": ")])))


@st.composite
def bodies(draw: st.DrawFn) -> str:
    texts = draw(st.lists(st.one_of(plain_lines(), plain_lines(), plain_lines(), lines()), min_size=1, max_size=6))
    array = "[" + draw(st.sampled_from([",", ", "])).join(texts) + "]"
    return '{"events":' + array + "}" if draw(st.booleans()) else array


@settings(max_examples=800, deadline=None)
@given(bodies())
def test_a_batch_body_decoded_fast_agrees_with_the_full_check(body: str) -> None:
    """HTTP batches: where the fast path takes a body, its rows and problems are the full check's."""
    fast = fast_batch(body.encode())
    if fast is None:
        return
    payload = loads_strict(body)
    events = payload["events"] if isinstance(payload, dict) else payload
    assert VALIDATOR.finish_all(fast, T0) == VALIDATOR.validate_all(events, T0)


def test_a_batch_with_a_key_given_twice_takes_the_full_check() -> None:
    assert fast_batch(b'[{"event":"a","key":"k"},{"event":"a","key":"k","key":"j"}]') is None
    assert fast_batch(b'[{"event":"a","key":"k"},{"event":"a","key":"j"}]') is not None
