"""Every event field with its hostile and extreme values, through every entry point a user takes: a
real ``trend serve`` over HTTP, a real ``trend ingest -`` fed by a pipe, the Python API, and
``trend.client`` against the real server. Each value is either refused naming its field (422, a bad
line, EventValidationError, set aside by the client) or stored exactly as the rules say; afterwards
the jobs still run, the tables equal the GROUP BY of what was stored, every read is JSON, and
``/healthz`` says ok. The expected forms are written out here, not taken from the code."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TrendFactory
from tests.deadlines import scaled
from tests.reference import group_events, stored_events, table_rows
from tests.servers import Served, environment
from trend.client import TrendClient
from trend.errors import EventValidationError, FieldProblem
from trend.model import LEVELS
from trend.service import Trend

pytestmark = [pytest.mark.faults, pytest.mark.slow]

REFUSED = "refused"
_EXAMPLES = itertools.count()
NFD_UMBRELLA = unicodedata.normalize("NFD", "우산")


@dataclass(frozen=True)
class Case:
    """One hostile value of one field: ``stored`` is the stored form of that field, or REFUSED."""

    field: str
    value: Any
    stored: Any

    @property
    def label(self) -> str:
        return f"{self.field}={self.value!r}"[:60]


def _cases(now_s: float) -> list[Case]:
    return [
        *(Case("event", v, s) for v, s in [
            ("Search", "Search"), ("a" * 64, "a" * 64), ("a/b", "a/b"), ("검색", "검색"), ("😀", "😀"), (" ", " "),
            ("", REFUSED), ("a" * 65, REFUSED), ("x\x00", REFUSED), (None, REFUSED), (7, REFUSED)]),
        *(Case("key", v, s) for v, s in [
            ("Umbrella ", "umbrella"), ("ＵＭＢＲＥＬＬＡ", "umbrella"), (NFD_UMBRELLA, "우산"), ("a  b\tc", "a b c"),
            ("ß", "ss"), ("İ", "i̇"), ("team/alice", "team/alice"), ("a" * 256, "a" * 256), ("😀" * 256, "😀" * 256),
            ("\u202eevil", "evil"), ("k\u200bey", "key"),
            ("'; DROP TABLE fact_events; --", "'; drop table fact_events; --"),
            ("", REFUSED), (" ", REFUSED), ("\u200b", REFUSED), ("a" * 257, REFUSED), ("x\x00", REFUSED),
            ("\ud800", REFUSED), (["a"], REFUSED), (1, REFUSED)]),
        *(Case("segment", v, s) for v, s in [
            ("KR", "kr"), ("", ""), ("a" * 64, "a" * 64), ("\u200b", ""), ("a" * 65, REFUSED), ("x\x00", REFUSED)]),
        *(Case("user_id", v, s) for v, s in [
            ("PRIV-3", "PRIV-3"), ("team/alice", "team/alice"), ("a" * 128, "a" * 128), ("", None), (None, None),
            ("a" * 129, REFUSED), ("x\x00", REFUSED), (3, REFUSED)]),
        *(Case("value", v, s) for v, s in [
            (0, 0.0), (-0.0, 0.0), (1e15, 1e15), (-1e15, -1e15), (5e-324, 5e-324), (2**49 + 1, 2.0**49 + 1),
            (1e15 * (1 + 2**-52), REFUSED), (1.7976931348623157e308, REFUSED), (-1.7976931348623157e308, REFUSED),
            (True, REFUSED), ("1", REFUSED)]),
        *(Case("event_id", v, s) for v, s in [
            ("id/with/slash", "id/with/slash"), ("", None), ("b" * 128, "b" * 128), ("b" * 129, REFUSED),
            ("x\x00", REFUSED)]),
        *(Case("ts", v, s) for v, s in [
            (now_s - 60, round((now_s - 60) * 1000)), (time.strftime("%Y-%m-%dT%H:%M:%S+09:00", time.gmtime(
                now_s + 9 * 3600)), int(now_s) * 1000),
            ("2025-11-13T06:51:00", REFUSED), (now_s + 600, REFUSED), (now_s - 8 * 86400, REFUSED), (1e12, REFUSED),
            ("garbage", REFUSED), (True, REFUSED), (math.nan, REFUSED)]),
    ]


# Lines that only a file or a raw body can hold: JSON's own edge cases.
RAW_LINES = [
    ('{"event": "search", "key": "a", "value": 1e309}', "value"),
    ('{"event": "search", "key": "a", "value": NaN}', ""),
    ('{"event": "search", "key": "a", "key": "b"}', ""),
    ('{"event": "search", "key": "a", "extra": 1}', "extra"),
    ('{"event": "search", "key": "\\ud800"}', "key"),
    ("[1, 2]", ""),
]


def _payload(case: Case, entry: str, n: int) -> dict[str, Any]:
    """The case's event, unique to its entry point so no two entry points' events are duplicates."""
    event: dict[str, Any] = {"event": "search", "key": f"{entry}-{n}", "event_id": f"{entry}-{n}"}
    if case.field == "event_id" and isinstance(case.value, str) and case.value:
        event["event_id"] = entry[0] + case.value[1:]
    else:
        event[case.field] = case.value
    if event[case.field] is None:
        del event[case.field]
        if case.field in ("event", "key"):
            return event
    return event


def _expected(case: Case, entry: str, n: int) -> dict[str, Any]:
    """The stored row of an accepted case (fields the case does not touch at their defaults)."""
    row: dict[str, Any] = {"event": "search", "key": f"{entry}-{n}", "segment": "", "user_id": None, "value": 1.0,
                           "event_id": f"{entry}-{n}"}
    if case.field == "event_id" and case.stored is not None:
        row["event_id"] = entry[0] + case.stored[1:]
    else:
        row[case.field] = case.stored
    return row


def _refused(case: Case, entry: str) -> bool:
    """Whether the entry point refuses the case: the client's ``track()`` takes ``ts`` as epoch
    seconds only, so an ISO-8601 text the server would take is set aside there."""
    return case.stored is REFUSED or (entry == "client" and case.field == "ts" and isinstance(case.value, str))


def _shown(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in ("event", "key", "segment", "user_id", "value", "event_id"))


@pytest.fixture
def served(database_url: str) -> Iterator[Served]:
    server = Served(database_url, "--no-worker")
    try:
        yield server
    finally:
        server.stop()


class TestEveryFieldThroughEveryEntryPoint:
    def test_each_value_is_refused_naming_its_field_or_stored_exactly(self, served: Served, database_url: str,
                                                                       make_trend: TrendFactory) -> None:
        now_s = time.time()
        cases = _cases(now_s)
        expected: list[dict[str, Any]] = []
        entries: dict[str, Callable[[], None]] = {}

        def over_http() -> None:
            for n, case in enumerate(cases):
                body = json.dumps(_payload(case, "http", n))
                response = httpx.post(f"{served.url}/v1/events", content=body,
                                      headers={"content-type": "application/json"})
                if case.stored is REFUSED:
                    assert response.status_code == 422, (case.label, response.text)
                    error = response.json()["error"]
                    named = None if error["code"] == "invalid_json" else case.field  # NaN: not JSON at all
                    assert error["field"] == named, (case.label, response.text)
                else:
                    assert response.status_code == 202, (case.label, response.text)
            for line, _ in RAW_LINES:
                response = httpx.post(f"{served.url}/v1/events", content=line.encode(),
                                      headers={"content-type": "application/json"})
                assert response.status_code == 422, (line, response.text)

        def through_a_pipe() -> None:
            lines = [json.dumps(_payload(case, "pipe", n)) for n, case in enumerate(cases)]
            lines += [line for line, _ in RAW_LINES]
            done = subprocess.run([sys.executable, "-m", "trend", "ingest", "-", "--json"],
                                  input="\n".join(lines).encode() + b"\n", capture_output=True,
                                  env=environment(database_url), timeout=scaled(120))
            assert done.returncode == 1, done.stderr  # bad lines: reported, the good ones stored
            result = json.loads(done.stdout)
            refused = {error["line"]: error["field"] for error in result["errors"]}
            wanted = {n + 1: case.field for n, case in enumerate(cases) if case.stored is REFUSED}
            wanted |= {len(cases) + n + 1: field for n, (_, field) in enumerate(RAW_LINES)}
            assert set(refused) == set(wanted), (sorted(set(refused) ^ set(wanted)))
            for line, field in wanted.items():
                assert refused[line] in (field, ""), (line, refused[line], field)
            assert result["accepted"] == sum(case.stored is not REFUSED for case in cases)

        def in_python() -> None:
            with Trend(database_url=database_url, worker_enabled=False) as trend:
                for n, case in enumerate(cases):
                    if case.stored is REFUSED:
                        with pytest.raises(EventValidationError) as refused:
                            trend.ingest([_payload(case, "api", n)])
                        assert refused.value.problems[0].field in (case.field, ""), case.label
                    else:
                        assert trend.ingest([_payload(case, "api", n)]).accepted == 1, case.label

        def through_the_client() -> None:
            given_up: list[tuple[dict[str, Any], str]] = []
            client = TrendClient(served.url, batch_size=7, flush_interval=0.05, max_retries=2,
                                 on_failure=lambda events, why: given_up.extend((e, why) for e in events))
            try:
                for n, case in enumerate(cases):
                    event = _payload(case, "client", n)
                    track = {name: event[name] for name in ("segment", "user_id", "value", "ts") if name in event}
                    # Never raises, whatever it is given (a type a caller should not pass included).
                    client.track(event.get("event"), event.get("key"),  # type: ignore[arg-type]
                                 event_id=event.get("event_id"), **track)
                assert not client.flush(timeout=scaled(60))  # settled, and the refused ones were not delivered
            finally:
                client.close()
            refused = sum(_refused(case, "client") for case in cases)
            stats = client.stats
            assert (stats.invalid, stats.failed, stats.delivered) == (refused, 0, len(cases) - refused)
            assert len(given_up) == refused

        entries = {"http": over_http, "pipe": through_a_pipe, "api": in_python, "client": through_the_client}
        for entry, run in entries.items():
            run()
            expected += [_expected(case, entry, n) for n, case in enumerate(cases) if not _refused(case, entry)]
        stored = make_trend()
        # The client makes an id for an event given none (an empty one is none): any id it made will do.
        got = Counter(_shown({**row, "event_id": None} if re.fullmatch("[0-9a-f]{32}", row["event_id"] or "")
                             else row) for row in stored_events(stored))
        assert got == Counter(_shown(row) for row in expected)
        self._the_jobs_still_run_and_health_tells_the_truth(served, stored)

    @staticmethod
    def _the_jobs_still_run_and_health_tells_the_truth(served: Served, trend: Trend) -> None:
        for level in LEVELS:
            response = httpx.post(f"{served.url}/v1/jobs/{level.job}/run", timeout=scaled(60))
            assert response.json()["levels"][0]["outcome"] in ("ran", "skipped_no_data"), response.text
        health = httpx.get(f"{served.url}/healthz").json()
        assert (health["status"], health["failing_buckets"]) == ("ok", [])
        for event in ("search", "Search", "😀"):
            for path in ("top", "rising"):
                response = httpx.get(f"{served.url}/v1/{path}", params={"event": event, "window": "1h"})
                assert response.status_code == 200, response.text
                json.loads(response.text, parse_constant=_not_json)
        series = httpx.get(f"{served.url}/v1/series", params={"event": "search", "interval": "1m"})
        json.loads(series.text, parse_constant=_not_json)
        # Rows only of buckets closed by now: the fresh ones are answered from raw events.
        now = int(time.time() * 1000)
        rows = {g: m for g, m in table_rows(trend, LEVELS[0]).items() if LEVELS[0].is_closed(g[0], now)}
        wanted = {g: m for g, m in group_events(stored_events(trend), LEVELS[0]).items() if g in rows}
        assert rows == wanted


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


class TestHypothesis:
    """Random values over the whole number range and every Unicode category, through the Python API:
    each is refused naming its field, or stored as the rules say and read back."""

    @given(value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70))
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_any_number_value(self, trend: Trend, value: float) -> None:
        event = f"f{next(_EXAMPLES)}"  # an event type per example: each reads only its own
        fits = math.isfinite(value) and abs(value) <= 1e15
        if not fits:
            with pytest.raises(EventValidationError) as refused:
                trend.ingest([{"event": event, "key": "k", "value": value}])
            assert refused.value.problems[0].field == "value"
            return
        trend.ingest([{"event": event, "key": "k", "value": value}])
        [stored] = [row["value"] for row in stored_events(trend) if row["event"] == event]
        assert stored == float(value)
        [point] = [p for p in trend.series(event, key="k", interval="1m").points if p.measures["count"]]
        assert point.measures["value_sum"] == float(value)

    @given(key=st.text(st.characters(), min_size=0, max_size=300))
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_any_text_key(self, trend: Trend, key: str) -> None:
        """Refused naming ``key`` when it holds NUL or a lone surrogate, or is empty or over 256
        characters once normalized; otherwise stored in a form that is already normalized (NFKC, case
        folded, trimmed, no runs of white space), and a read finds it under the key as it was given."""
        event = f"t{next(_EXAMPLES)}"
        unstorable = "\x00" in key or any(0xD800 <= ord(c) <= 0xDFFF for c in key)
        if unstorable:
            with pytest.raises(EventValidationError) as refused:
                trend.ingest([{"event": event, "key": key}])
            assert refused.value.problems[0].field == "key"
            return
        problem: FieldProblem | None = None
        try:
            trend.ingest([{"event": event, "key": key}])
        except EventValidationError as refused:
            problem = refused.problems[0]
        if problem is not None:
            assert problem.field == "key"
            assert any(why in problem.message for why in ("empty", "longer than 256", "at least 1 character"))
            return
        [stored] = [row["key"] for row in stored_events(trend) if row["event"] == event]
        assert 1 <= len(stored) <= 256
        assert stored == unicodedata.normalize("NFKC", stored)
        assert stored == unicodedata.normalize("NFKC", stored.casefold())
        assert stored == stored.strip()
        assert not re.search(r"\s\s", stored)
        [line] = trend.series(event, key=[key], interval="1m").lines
        assert line.key == stored
        assert sum(point.measures["count"] for point in line.points) == 1
