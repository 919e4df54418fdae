"""Hand-built cases for the formulas and edges of docs/queries.md."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from tests.conftest import T0, TrendFactory
from tests.reference import ref_rising, ref_top
from trend.clock import FakeClock
from trend.errors import QueryError
from trend.model import HOUR_MS, MINUTE_MS
from trend.rising import Score, rising_ranked, zscore, zscore_order
from trend.service import Trend
from trend.shapes import rising_shape, series_shape, top_shape


def _events(trend: Trend, counts: dict[str, int], ts_ms: int, event: str = "search") -> None:
    trend.ingest([{"event": event, "key": key, "ts": ts_ms / 1000} for key, n in counts.items() for _ in range(n)])


class TestTop:
    def test_rank_change_and_new(self, trend: Trend) -> None:
        """prev_rank comes from the previous window's top-N; a key absent from it is NEW."""
        _events(trend, {"a": 5, "b": 3, "c": 1}, T0 - 90 * MINUTE_MS)
        _events(trend, {"b": 6, "a": 4, "d": 2}, T0 - 10 * MINUTE_MS)
        top = trend.top("search", window="1h")
        assert [(i.key, i.count, i.prev_rank, i.rank_change, i.is_new) for i in top.items] == [
            ("b", 6, 2, 1, False), ("a", 4, 1, -1, False), ("d", 2, None, None, True)]

    def test_a_key_below_the_previous_limit_is_new(self, trend: Trend) -> None:
        _events(trend, {"a": 5, "b": 4, "c": 1}, T0 - 90 * MINUTE_MS)
        _events(trend, {"c": 9}, T0)
        top = trend.top("search", window="1h", limit=2)
        assert [(i.key, i.is_new) for i in top.items] == [("c", True)]

    def test_ties_go_to_the_key_that_sorts_first(self, make_trend: TrendFactory) -> None:
        trend = make_trend(key_normalization="none")  # keep "B" and "b" apart: by code point, "B" < "a"
        _events(trend, {"b": 2, "우산": 2, "a": 2, "B": 2}, T0)
        assert [i.key for i in trend.top("search", window="5m").items] == ["B", "a", "b", "우산"]

    def test_window_edges(self, trend: Trend, clock: FakeClock) -> None:
        """A 5m window at 06:51:30 is [06:47:00, 06:52:00): whole minutes, the current one included."""
        clock.set(T0 + 30_000)
        trend.ingest([{"event": "search", "key": "out", "ts": (T0 - 4 * MINUTE_MS - 1) / 1000},
                      {"event": "search", "key": "first", "ts": (T0 - 4 * MINUTE_MS) / 1000},
                      {"event": "search", "key": "now", "ts": (T0 + 30_000) / 1000}])
        top = trend.top("search", window="5m")
        assert (top.start, top.end) == (T0 - 4 * MINUTE_MS, T0 + MINUTE_MS)
        assert sorted(i.key for i in top.items) == ["first", "now"]

    def test_at_in_the_past_and_segments(self, trend: Trend) -> None:
        trend.ingest([{"event": "search", "key": "kr-only", "segment": "kr", "ts": (T0 - 3 * HOUR_MS) / 1000},
                      {"event": "search", "key": "us-only", "segment": "us", "ts": (T0 - 3 * HOUR_MS) / 1000}])
        at = T0 - 3 * HOUR_MS + 30 * MINUTE_MS
        assert [i.key for i in trend.top("search", window="1h", at_ms=at).items] == ["kr-only", "us-only"]
        assert [i.key for i in trend.top("search", segment="kr", window="1h", at_ms=at).items] == ["kr-only"]
        assert trend.top("search", window="1h").items == []

    def test_an_unknown_event_or_window_is_refused(self, trend: Trend) -> None:
        _events(trend, {"a": 1}, T0)
        with pytest.raises(QueryError, match="unknown event 'serch'; known events: search"):
            trend.top("serch")
        with pytest.raises(QueryError, match="unknown window '2h'"):
            trend.top("search", window="2h")


class TestRisingByZScore:
    """``score=zscore``, the score of earlier releases, kept so alert thresholds can be migrated."""

    def test_score_with_an_empty_baseline(self) -> None:
        """No history: μ = σ = 0, so z = c / max(0, 0, 1) = c; a breakout, with no growth."""
        rise = zscore(5, [0] * 12)
        assert (rise.expected, rise.spread, rise.score, rise.growth_pct, rise.breakout) == (0.0, 0.0, 5.0, None, True)

    def test_score_uses_the_largest_of_sigma_sqrt_mu_and_one(self) -> None:
        rise = zscore(100, [25] * 4)
        assert (rise.expected, rise.spread) == (25.0, 0.0)
        assert rise.score == pytest.approx(75 / 5)  # √25 = 5 beats σ = 0
        assert rise.growth_pct == pytest.approx(100 * (101 / 26 - 1))
        other = zscore(30, [0, 20, 0, 20])
        assert other.spread == 10.0
        assert other.score == pytest.approx(20 / 10)

    def test_bursting_key_ranks_first_and_min_count_filters(self, trend: Trend) -> None:
        for n in range(1, 7):  # six 15m windows of steady traffic before the current one
            _events(trend, {"steady": 10, "burst": 1}, T0 - n * 15 * MINUTE_MS)
        _events(trend, {"steady": 11, "burst": 12, "tiny": 2}, T0)
        rising = trend.rising("search", window="15m", baseline=6, min_count=5, score="zscore")
        assert [i.key for i in rising.items] == ["burst", "steady"]
        burst = rising.items[0]
        assert (burst.count, burst.baseline) == (12, 1.0)
        assert burst.score == pytest.approx(11.0)
        assert burst.growth_pct == pytest.approx(550.0)
        assert math.isclose(rising.items[1].score, 1 / math.sqrt(10))  # σ = 0, so √μ is the scale

    def test_keys_at_or_below_their_baseline_are_not_rising(self, trend: Trend) -> None:
        for n in range(1, 7):
            _events(trend, {"falling": 40, "flat": 10, "up": 5}, T0 - n * 15 * MINUTE_MS)
        _events(trend, {"falling": 20, "flat": 10, "up": 9}, T0)
        rising = trend.rising("search", window="15m", baseline=6, min_count=5, score="zscore")
        assert [i.key for i in rising.items] == ["up"]  # "falling" (growth -50 %) and "flat" are not listed
        assert all(i.score > 0 and (i.growth_pct or 0) > 0 for i in rising.items)

    def test_equal_scores_tie_exactly_and_go_to_the_higher_count(self, trend: Trend) -> None:
        """docs/queries.md, rising: 20 against a baseline (0, 0, 5) and 12 against (0, 0, 3) both score
        exactly √60.5. In floating point the second came out 4e-16 higher and ranked first."""
        _events(trend, {"b": 5, "a": 3}, T0 - 15 * MINUTE_MS)
        _events(trend, {"b": 20, "a": 12}, T0)
        rising = trend.rising("search", window="15m", baseline=3, min_count=1, score="zscore")
        assert [(i.key, i.count) for i in rising.items] == [("b", 20), ("a", 12)]
        assert rising.items[0].score == rising.items[1].score == math.sqrt(60.5)

    def test_scores_equal_only_as_floats_rank_exactly(self) -> None:
        """Rising sorts by floats first, then puts each run of equal floats in exact order. With one
        baseline window, a = 2⁶⁰+1 against 0 orders as (2⁶⁰+1)² and b = 2⁶¹+4 against 4 as (2⁶⁰)²:
        the same double, so by floats alone b would win on its higher count."""
        scored = rising_ranked({"a": 2**60 + 1, "b": 2**61 + 4}, [{"b": 4}], 1, Score.ZSCORE)
        assert [rise.key for rise in scored] == ["a", "b"]
        assert zscore_order(2**60 + 1, [0]) > zscore_order(2**61 + 4, [4])
        assert float(zscore_order(2**60 + 1, [0])) == float(zscore_order(2**61 + 4, [4]))


def _surge_with_bursts(trend: Trend, rng: random.Random, *, surge: float) -> list[str]:
    """12 windows of 15 minutes of a long tail (300 keys, Zipf), then one where the whole stream is
    ``surge`` times as busy and three ordinary keys take four times their share on top: those three."""
    keys = [f"k{n:03d}" for n in range(300)]
    weights = [1 / (n + 1) ** 1.1 for n in range(300)]
    planted = ["k012", "k020", "k031"]
    for window in range(12, -1, -1):
        volume = 3_000 * (surge if window == 0 else 1)
        counts = dict.fromkeys(keys, 0)
        for key in rng.choices(keys, weights, k=int(volume)):
            counts[key] += 1
        if window == 0:
            for key in planted:
                counts[key] = int(counts[key] * 4)
        _events(trend, {k: c for k, c in counts.items() if c}, T0 - window * 15 * MINUTE_MS)
    return planted


class TestRisingByShare:
    """``score=poisson``, the default: a key's share of the stream against its share before
    (trend/rising.py, docs/queries.md), computed exactly from exact counts."""

    @pytest.mark.parametrize("surge", [1.0, 5.0, 0.2])
    def test_keys_that_burst_are_first_in_steady_traffic_a_surge_and_a_drop(self, trend: Trend,
                                                                            surge: float) -> None:
        planted = _surge_with_bursts(trend, random.Random(7), surge=surge)
        rising = trend.rising("search", window="15m", baseline=12, limit=10)
        assert sorted(i.key for i in rising.items[:3]) == planted
        assert rising.score == "poisson"

    def test_under_a_surge_the_z_score_puts_the_biggest_keys_first_and_the_share_does_not(
            self, trend: Trend) -> None:
        """What the share score is for: the biggest keys did not change their share in a ×5 surge."""
        planted = _surge_with_bursts(trend, random.Random(7), surge=5.0)
        by_z = trend.rising("search", window="15m", baseline=12, limit=3, score="zscore")
        assert sorted(i.key for i in by_z.items) != planted
        assert {"k000", "k001"} & {i.key for i in by_z.items}

    def test_a_key_without_history_is_a_breakout_with_no_growth(self, trend: Trend) -> None:
        for n in range(1, 13):
            _events(trend, {"steady": 10}, T0 - n * 15 * MINUTE_MS)
        _events(trend, {"steady": 10, "new": 20}, T0)
        [new] = [i for i in trend.rising("search", window="15m").items if i.key == "new"]
        assert new.breakout
        assert new.growth_pct is None

    def test_a_short_list_says_how_many_keys_min_count_kept_out(self, trend: Trend) -> None:
        _events(trend, {"a": 1, "b": 2, "c": 4, "d": 9}, T0)
        rising = trend.rising("search", window="15m", min_count=5)
        assert [i.key for i in rising.items] == ["d"]
        assert rising.below_min_count == 3


class TestManyKeys:
    """No read depends on how many keys exist: 50,000 candidates once made SQLite refuse the statement
    ("too many SQL variables") and PostgreSQL too (more than 65,535 parameters)."""

    KEYS = 50_000

    @pytest.fixture
    def events(self, trend: Trend) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [
            {"event": "search", "key": f"k{n}", "segment": "", "ts": T0 - (n % 3) * 15 * MINUTE_MS,
             "user_id": f"u{n % 7}"} for n in range(self.KEYS)]
        # A few keys with a real history: 48 windows of 15m reach 12 hours back.
        events += [{"event": "search", "key": f"k{n}", "segment": "", "ts": T0 - w * 15 * MINUTE_MS,
                    "user_id": f"u{w}"} for n in range(20) for w in range(0, 48, n + 1)]
        for start in range(0, len(events), 10_000):
            trend.ingest([{**e, "ts": e["ts"] / 1000} for e in events[start:start + 10_000]])
        return events

    def test_top_by_count_and_by_users(self, trend: Trend, events: list[dict[str, Any]]) -> None:
        start, end = T0 + MINUTE_MS - 24 * HOUR_MS, T0 + MINUTE_MS
        by_count = trend.top("search", window="24h", limit=20)
        assert [(i.key, i.count) for i in by_count.items] == ref_top(events, "search", None, start, end, 20)
        by_users = trend.top("search", window="24h", limit=20, by="users")
        assert [(i.key, i.users) for i in by_users.items] == ref_top(events, "search", None, start, end, 20, "users")

    def test_rising_with_every_key_a_candidate(self, trend: Trend, events: list[dict[str, Any]]) -> None:
        rising = trend.rising("search", window="15m", baseline=48, min_count=1, limit=30)
        expected = ref_rising(events, "search", None, T0 + MINUTE_MS - 15 * MINUTE_MS, T0 + MINUTE_MS, 48, 1)
        assert len([e for e in events if e["ts"] >= T0 - 14 * MINUTE_MS]) > 16_000  # the candidates
        assert [(i.key, i.count) for i in rising.items] == [(key, count) for key, count, _ in expected[:30]]
        assert [i.score for i in rising.items] == pytest.approx([score for _, _, score in expected[:30]])


class TestSeries:
    def test_missing_buckets_are_zero_filled(self, trend: Trend) -> None:
        trend.ingest([{"event": "search", "key": "k", "value": v, "ts": (T0 - 3 * MINUTE_MS) / 1000} for v in (2, 5)])
        series = trend.series("search", key="k", interval="1m", start_ms=T0 - 5 * MINUTE_MS, end_ms=T0)
        assert [(p.bucket, p.count, p.measures["value_sum"], p.measures["value_min"], p.measures["value_max"])
                for p in series.points] == [
            (T0 - 5 * MINUTE_MS, 0, 0.0, None, None), (T0 - 4 * MINUTE_MS, 0, 0.0, None, None),
            (T0 - 3 * MINUTE_MS, 2, 7.0, 2.0, 5.0), (T0 - 2 * MINUTE_MS, 0, 0.0, None, None),
            (T0 - MINUTE_MS, 0, 0.0, None, None)]

    def test_default_range_ends_with_the_current_bucket(self, trend: Trend) -> None:
        series = trend.series("search", interval="5m")
        assert series.end == T0 - T0 % (5 * MINUTE_MS) + 5 * MINUTE_MS
        assert len(series.points) == 24 * 12

    @pytest.mark.parametrize(("interval", "hours", "ok"), [("1m", 24, True), ("1m", 25, False),
                                                           ("5m", 167, True), ("1h", 2161, False)])
    def test_range_limits(self, trend: Trend, interval: str, hours: int, ok: bool) -> None:
        def call() -> None:
            trend.series("search", interval=interval, start_ms=T0 - hours * HOUR_MS, end_ms=T0)

        if ok:
            call()
        else:
            with pytest.raises(QueryError, match="too long for interval"):
                call()

    def test_an_inverted_range_is_refused(self, trend: Trend) -> None:
        with pytest.raises(QueryError, match="end: must be after start"):
            trend.series("search", start_ms=T0, end_ms=T0 - HOUR_MS)


class TestDisplayZone:
    def test_times_carry_the_display_zones_offset(self, trend: Trend) -> None:
        _events(trend, {"a": 6}, T0)
        seoul = trend.settings.model_copy(update={"timezone": "Asia/Seoul"}).zone
        top = top_shape(trend.top("search", window="5m"), seoul)
        assert top["at"] == "2025-11-13T15:51:00+09:00"
        series = series_shape(trend.series("search", interval="1h", start_ms=T0 - HOUR_MS, end_ms=T0), seoul)
        assert series["points"][-1]["t"] == "2025-11-13T15:00:00+09:00"
        assert rising_shape(trend.rising("search", window="5m"), seoul)["end"] == "2025-11-13T15:52:00+09:00"


class TestPartialBaseline:
    def test_a_baseline_older_than_the_data_held_is_flagged(self, trend: Trend) -> None:
        """docs/queries.md, rising: with 30 minutes of data, 12 windows of 15m reach 3h back; the answer
        and every item say so. Once the data reaches back past the baseline, they do not."""
        trend.ingest([{"event": "search", "key": f"k{n % 4}", "ts": (T0 - n * 20_000) / 1000} for n in range(90)])
        young = trend.rising("search", window="15m", min_count=1)
        assert young.items
        assert young.baseline_partial
        assert all(item.baseline_partial for item in young.items)
        trend.ingest([{"event": "search", "key": "k0", "ts": (T0 - 4 * 3_600_000) / 1000}])
        grown = trend.rising("search", window="15m", min_count=1)
        assert not grown.baseline_partial
        assert not any(item.baseline_partial for item in grown.items)
