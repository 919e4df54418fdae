"""`trend demo`: realistic traffic, rolled up, so a new user sees trends at once."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.reference import assert_levels_equal, closed_markers, stored_events
from trend.cli import main
from trend.demo import KEYWORDS
from trend.service import Trend


class TestDemo:
    def test_generates_varied_traffic_and_rolls_it_up(self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["demo", "--minutes", "90", "--rate", "60", "--json"],
                                    catch_exceptions=False)
        assert result.exit_code == 0
        summary = json.loads(result.stdout)
        assert summary["minutes"] == 90
        assert summary["duplicates"] > 0  # some retried event_ids
        with Trend(database_url=database_url) as trend:
            events = stored_events(trend)
            assert len(events) == summary["accepted"]
            assert {e["event"] for e in events} == {"search", "view", "purchase"}
            assert len({e["segment"] for e in events}) >= 3
            keys = {e["key"] for e in events}
            assert any("\uac00" <= ch <= "\ud7a3" for key in keys for ch in key)  # Korean keywords
            assert any(key.isascii() for key in keys)
            assert keys - set(KEYWORDS)  # bursting keywords beyond the everyday ones
            now = trend.clock.now_ms()
            assert closed_markers(trend, now - 60_000) == []  # rolled up, so the charts are full at once
            assert_levels_equal(trend, events, now - 60_000)
            top = trend.top("search", window="1h", limit=3)
            assert len(top.items) == 3
