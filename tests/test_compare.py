"""series for several keys at once, and against the period before (compare=previous)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import T0
from trend.api.app import create_app
from trend.cli import main
from trend.clock import FakeClock
from trend.errors import QueryError
from trend.model import MINUTE_MS
from trend.service import Trend

KEYS = ("우산", "boots", "coat")


def _history(trend: Trend) -> list[dict[str, object]]:
    """Two hours of three keys at different rates, some rolled up, the newest minutes still raw."""
    events = [{"event": "search", "key": KEYS[n % 3], "ts": (T0 - 119 * MINUTE_MS + n * 9_000) / 1000}
              for n in range(800) if n % 7 != 3 or n % 3 == 0]
    trend.ingest(events)
    trend.rollup()
    return events


def _expected(events: list[dict[str, object]], key: str, start: int, end: int) -> list[int]:
    """Counts per 5m bucket of [start, end), from the events themselves."""
    counts = Counter((int(float(str(e["ts"])) * 1000) // (5 * MINUTE_MS)) * 5 * MINUTE_MS for e in events
                     if e["key"] == key)
    return [counts.get(t, 0) for t in range(start, end, 5 * MINUTE_MS)]


class TestCompare:
    def test_several_keys_and_the_previous_period_match_the_events(self, trend: Trend, clock: FakeClock) -> None:
        events = _history(trend)
        start, end = T0 - 60 * MINUTE_MS, T0 + MINUTE_MS  # aligned to 5m: 05:50 … 06:55
        series = trend.series("search", key=list(KEYS), interval="5m", start_ms=start, end_ms=end,
                              compare="previous")
        assert [line.key for line in series.lines] == list(KEYS)
        width = series.end - series.start
        for line in series.lines:
            assert line.key is not None
            assert [p.count for p in line.points] == _expected(events, line.key, series.start, series.end)
            assert line.previous is not None
            assert [p.bucket for p in line.previous] == [p.bucket - width for p in line.points]  # aligned
            assert [p.count for p in line.previous] == _expected(events, line.key, series.start - width,
                                                                  series.start)
        assert sum(p.count for line in series.lines for p in line.previous or []) > 0

    def test_one_key_is_the_same_answer_as_before(self, trend: Trend) -> None:
        _history(trend)
        one = trend.series("search", key="boots", interval="5m")
        assert len(one.lines) == 1
        assert one.points == one.lines[0].points
        assert one.lines[0].previous is None

    def test_at_most_five_keys(self, trend: Trend) -> None:
        _history(trend)
        with pytest.raises(QueryError, match="from 1 to 5 keys") as refused:
            trend.series("search", key=[f"k{n}" for n in range(6)])
        assert refused.value.parameter == "key"

    def test_http_and_the_cli(self, trend: Trend, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        _history(trend)
        with TestClient(create_app(trend=trend)) as client:
            body = client.get("/v1/series", params=[("event", "search"), ("key", "boots"), ("key", "coat"),
                                                    ("interval", "5m"), ("compare", "previous")]).json()
            assert [line["key"] for line in body["series"]] == ["boots", "coat"]
            assert all(len(line["previous"]) == len(line["points"]) for line in body["series"])
            assert body["previous"]["end"] == body["start"]
            too_many = client.get("/v1/series", params={"event": "search", "key": [f"k{n}" for n in range(6)]})
            assert (too_many.status_code, too_many.json()["error"]["field"]) == (422, "key")
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["series", "--event", "search", "--key", "boots", "--key", "coat",
                                           "--interval", "5m", "--compare", "previous", "--json"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.stdout
        assert [line["key"] for line in json.loads(result.stdout)["series"]] == ["boots", "coat"]
