"""Ingest through the Python API: validation per README "Events", atomic batches, duplicates, markers."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from tests.conftest import T0
from tests.reference import markers, stored_events
from trend.errors import EventValidationError
from trend.model import DAY_MS, MINUTE_MS
from trend.service import Trend
from trend.storage.write.events import Inserted

GOOD = {"event": "search", "key": "우산"}

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"key": "k"}, "event"),
    ({"event": "search"}, "key"),
    ({"event": "", "key": "k"}, "event"),
    ({"event": "e" * 65, "key": "k"}, "event"),
    ({"event": "search", "key": ""}, "key"),
    ({"event": "search", "key": "k" * 257}, "key"),
    ({"event": "search", "key": 5}, "key"),
    ({"event": "search", "key": "a\x00b"}, "key"),
    ({**GOOD, "segment": "s" * 65}, "segment"),
    ({**GOOD, "user_id": "u" * 129}, "user_id"),
    ({**GOOD, "event_id": "i" * 129}, "event_id"),
    ({**GOOD, "value": float("nan")}, "value"),
    ({**GOOD, "value": float("inf")}, "value"),
    ({**GOOD, "value": "3"}, "value"),
    ({**GOOD, "value": True}, "value"),
    ({**GOOD, "ts": "2025-11-13T06:51:00"}, "ts"),  # no zone
    ({**GOOD, "ts": "yesterday"}, "ts"),
    ({**GOOD, "ts": True}, "ts"),
    ({**GOOD, "ts": (T0 - 7 * DAY_MS) / 1000}, "ts"),  # older than the accepted lateness
    ({**GOOD, "ts": (T0 + 6 * MINUTE_MS) / 1000}, "ts"),  # more than 5 minutes ahead
    ({**GOOD, "colour": "red"}, "colour"),  # unknown fields are an error
]


class TestValidation:
    @pytest.mark.parametrize(("payload", "field"), INVALID)
    def test_invalid_event_rejects_the_whole_batch(self, trend: Trend, payload: dict[str, Any], field: str) -> None:
        """One bad event among good ones: a clear error naming index and field, and nothing stored."""
        with pytest.raises(EventValidationError) as caught:
            trend.ingest([GOOD, GOOD, payload])
        problem = caught.value.problems[0]
        assert (problem.position, problem.field) == (2, field)
        assert problem.message
        assert stored_events(trend) == []
        assert markers(trend) == []

    def test_non_object_is_rejected(self, trend: Trend) -> None:
        with pytest.raises(EventValidationError, match="JSON object"):
            trend.ingest([GOOD, ["not", "an", "object"]])
        assert stored_events(trend) == []

    def test_lenient_mode_stores_the_good_and_reports_the_bad(self, trend: Trend) -> None:
        result = trend.ingest([GOOD, {"event": "search"}, GOOD], strict=False)
        assert (result.accepted, result.duplicates, result.rejected) == (2, 0, 1)
        assert result.errors[0].position == 1
        assert len(stored_events(trend)) == 2

    @pytest.mark.parametrize(("ts", "expected_ms"), [
        ("2025-11-13T06:50:30Z", T0 - 30_000),
        ("2025-11-13T15:50:30+09:00", T0 - 30_000),
        (T0 / 1000 - 30, T0 - 30_000),
        (int(T0 / 1000) - 30, T0 - 30_000),
        (None, T0),
    ])
    def test_times_in_every_accepted_form(self, trend: Trend, ts: Any, expected_ms: int) -> None:
        payload = {**GOOD} if ts is None else {**GOOD, "ts": ts}
        trend.ingest([payload])
        assert [e["ts"] for e in stored_events(trend)] == [expected_ms]

    def test_edges_of_the_accepted_range_are_inclusive(self, trend: Trend) -> None:
        lateness = trend.settings.accepted_lateness
        result = trend.ingest([{**GOOD, "ts": (T0 - lateness) / 1000}, {**GOOD, "ts": (T0 + 5 * MINUTE_MS) / 1000}])
        assert result.accepted == 2


class TestStorage:
    def test_fields_are_stored_as_given(self, trend: Trend) -> None:
        trend.ingest([{"event": "view", "key": "item-1", "segment": "kr", "user_id": "u1", "value": 2.5,
                       "event_id": "e1", "ts": T0 / 1000 - 1}])
        [row] = stored_events(trend)
        assert {k: row[k] for k in ("event", "key", "segment", "user_id", "value", "event_id", "ts")} == {
            "event": "view", "key": "item-1", "segment": "kr", "user_id": "u1", "value": 2.5, "event_id": "e1",
            "ts": T0 - 1000}
        assert row["minute"] == T0 - MINUTE_MS
        assert row["received_at"] == T0

    def test_event_id_repeats_are_duplicates_not_events(self, trend: Trend) -> None:
        """Across batches and inside one batch, a repeated event_id is counted as a duplicate."""
        first = trend.ingest([{**GOOD, "event_id": "a"}, {**GOOD, "event_id": "a"}, {**GOOD}])
        second = trend.ingest([{**GOOD, "event_id": "a"}, {**GOOD, "event_id": "b"}])
        assert (first.accepted, first.duplicates) == (2, 1)
        assert (second.accepted, second.duplicates) == (1, 1)
        assert len(stored_events(trend)) == 3

    def test_concurrent_batches_store_each_id_once_in_any_order(self, trend: Trend) -> None:
        """Overlapping batches in different orders, at once: every id is stored once, every repeat is a
        duplicate, and no batch fails (on PostgreSQL, two writers waiting on each other's ids would
        deadlock)."""
        randomness = random.Random(7)
        ids = [f"id-{n:05d}" for n in range(3_000)]
        batches = [randomness.sample(ids, 2_000) for _ in range(4)]
        results: list[Inserted] = []
        failures: list[BaseException] = []

        def send(batch: list[str]) -> None:
            try:
                result = trend.ingest([{**GOOD, "event_id": one, "ts": (T0 - 120_000) / 1000} for one in batch])
                results.append(Inserted(result.accepted, result.duplicates))
            except BaseException as exc:  # reported by the assertion below
                failures.append(exc)

        threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == []
        union = set().union(*batches)
        assert sum(one.accepted for one in results) == len(union)
        assert sum(one.duplicates for one in results) == sum(map(len, batches)) - len(union)
        assert sorted(row["event_id"] for row in stored_events(trend)) == sorted(union)

    def test_ingest_marks_each_distinct_minute_once(self, trend: Trend) -> None:
        trend.ingest([{**GOOD, "ts": (T0 - 90_000) / 1000}, {**GOOD, "ts": (T0 - 70_000) / 1000},
                      {**GOOD, "ts": T0 / 1000}])
        assert sorted(markers(trend)) == [("1m", T0 - 2 * MINUTE_MS), ("1m", T0)]

    def test_a_batch_of_only_duplicates_marks_nothing(self, trend: Trend) -> None:
        trend.ingest([{**GOOD, "event_id": "x", "ts": (T0 - 10 * MINUTE_MS) / 1000}])
        trend.rollup()
        before = markers(trend)
        assert ("1m", T0 - 10 * MINUTE_MS) not in before
        result = trend.ingest([{**GOOD, "event_id": "x", "ts": (T0 - 10 * MINUTE_MS) / 1000}])
        assert result.duplicates == 1
        assert markers(trend) == before
