"""Distinct users: counted per row as a mergeable sketch, ranked by, and kept honest (docs/architecture.md)."""

from __future__ import annotations

import json
import random
import statistics
import time
import unicodedata
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from tests.conftest import SKETCH_BACKENDS, T0, TrendFactory
from tests.reference import assert_levels_equal, markers, stored_events
from trend.api.app import create_app
from trend.cli import main
from trend.clock import FakeClock, SystemClock
from trend.errors import ConfigError
from trend.model import HOUR_MS, LEVELS, MINUTE_MS
from trend.service import Trend
from trend.storage import sketches
from trend.storage.shared.schema import SCHEMA_VERSION, fact_events, level_table

# PostgreSQL twice: with postgresql-hll, and folding sketches in Python as on a server without it.
pytestmark = pytest.mark.parametrize("backend", SKETCH_BACKENDS, indirect=True)


def _send(trend: Trend, events: list[dict[str, object]]) -> None:
    for offset in range(0, len(events), 5_000):
        trend.ingest(events[offset:offset + 5_000])


class TestFlooding:
    def test_one_account_flooding_a_key_cannot_rank_by_users(self, trend: Trend, clock: FakeClock) -> None:
        """4,000 searches from one account lose to 300 people searching once, and to a long tail of 10-200."""
        rng = random.Random(5)
        start = T0 - 50 * MINUTE_MS
        events: list[dict[str, object]] = [
            {"event": "search", "key": "flood", "user_id": "bot", "ts": (start + n * 700) / 1000} for n in range(4_000)]
        events += [{"event": "search", "key": "crowd", "user_id": f"p{n}", "ts": (start + n * 9_000) / 1000}
                   for n in range(300)]
        for k in range(30):
            people = rng.randint(10, 200)
            events += [{"event": "search", "key": f"tail-{k}", "user_id": f"t{k}-{n}",
                        "ts": (start + rng.randrange(45 * MINUTE_MS)) / 1000} for n in range(people)]
        _send(trend, events)
        trend.rollup()  # part of the hour is rolled up, the open minutes are read from raw events
        by_count = trend.top("search", window="1h", limit=20)
        by_users = trend.top("search", window="1h", limit=20, by="users")
        assert by_count.items[0].key == "flood"
        keys = [item.key for item in by_users.items]
        assert "flood" not in keys
        assert keys[0] == "crowd"
        assert by_users.items[0].users == 300
        rising = trend.rising("search", window="1h", by="users", limit=20, baseline=3)
        assert "flood" not in [item.key for item in rising.items]


class TestRankingStopsEarlyOnlyWhenSafe:
    def test_keys_far_down_the_count_ranking_still_win_by_users(self, trend: Trend) -> None:
        """300 flooded keys out-count every real one, so the ranking by users must look past several rounds
        of candidates taken by count; the top 10 by users is then the exact ranking of the model."""
        start = T0 - 50 * MINUTE_MS
        events: list[dict[str, object]] = []
        for n in range(300):  # 60..359 events from one account each
            events += [{"event": "search", "key": f"flood-{n:03}", "user_id": f"bot-{n}",
                        "ts": (start + i * 1_000) / 1000} for i in range(60 + n)]
        people = {f"real-{n:02}": 20 + n for n in range(30)}  # 20..49 people, once each; 41 and 40 tie below
        people["real-tie"] = 40
        for key, size in people.items():
            events += [{"event": "search", "key": key, "user_id": f"{key}-{i}", "ts": (start + i * 3_000) / 1000}
                       for i in range(size)]
        _send(trend, events)
        trend.rollup()
        exact = sorted(people.items(), key=lambda item: (-item[1], item[0]))[:10]
        top = trend.top("search", window="1h", by="users")
        assert [(item.key, item.users) for item in top.items] == exact
        assert [item.key for item in trend.top("search", window="1h").items][:3] == [
            "flood-299", "flood-298", "flood-297"]


class TestAccuracy:
    def test_every_answer_is_within_bounds_and_small_counts_are_exact(self, trend: Trend, clock: FakeClock,
                                                                      backend: str) -> None:
        """Within max(2, 5%) of the exact count for every key, median relative error <= 2%, exact up to 100,
        with sketches merged from 1m to 5m to 1h and over a window."""
        if backend == "mariadb":
            pytest.skip("the sketches are folded in the process exactly as on postgres-python-sketches, tested there")
        rng = random.Random(11)
        sizes = [1, 2, 7, 40, 100, 150, 400, 1_000, 3_000, 8_000, 20_000]
        start = T0 - 3 * HOUR_MS
        events: list[dict[str, object]] = []
        for index, size in enumerate(sizes):
            for n in range(size):
                # Each person twice, at different times: repeats must not count twice across buckets.
                for _ in range(2):
                    events.append({"event": "view", "key": f"item-{index}", "user_id": f"u{index}-{n}",
                                   "ts": (start + rng.randrange(3 * HOUR_MS - MINUTE_MS)) / 1000})
        rng.shuffle(events)
        _send(trend, events)
        trend.rollup()
        top = trend.top("view", window="6h", limit=len(sizes), by="users")
        got = {item.key: item.users for item in top.items}
        errors = []
        for index, size in enumerate(sizes):
            users = got[f"item-{index}"]
            assert users is not None
            if size <= 100:
                assert users == size, f"{size} people should be counted exactly, got {users}"
            assert abs(users - size) <= max(2, 0.05 * size), (size, users)
            errors.append(abs(users - size) / size)
        assert statistics.median(errors) <= 0.02
        series = trend.series("view", interval="1h", start_ms=start, end_ms=T0)
        for point in series.points:  # without a key: the union over every key, per hour
            inside = [e for e in events if point.bucket <= float(str(e["ts"])) * 1000 < point.bucket + HOUR_MS]
            exact = len({e["user_id"] for e in inside})
            assert abs(point.measures["users_sketch"] - exact) <= max(2, 0.05 * exact)


class TestUsersAndEvents:
    def test_events_without_a_user_do_not_count_and_a_series_without_a_key_unions_keys(self, trend: Trend) -> None:
        trend.ingest([{"event": "search", "key": "a", "user_id": "x", "ts": (T0 - 120_000) / 1000},
                      {"event": "search", "key": "b", "user_id": "x", "ts": (T0 - 120_000) / 1000},
                      {"event": "search", "key": "b", "user_id": "y", "ts": (T0 - 60_000) / 1000},
                      {"event": "search", "key": "b", "ts": (T0 - 60_000) / 1000}])
        trend.rollup()
        [point] = trend.series("search", interval="1h", start_ms=T0 - HOUR_MS + 60_000, end_ms=T0).points[-1:]
        assert (point.count, point.measures["users_sketch"]) == (4, 2)  # x and y, whatever the key
        with trend.db.read() as tx:
            nulls = tx.execute(text("SELECT count(*) FROM agg_1m WHERE users_sketch IS NULL")).scalar()
        assert nulls == 0
        trend.ingest([{"event": "search", "key": "c", "ts": (T0 - 120_000) / 1000}])
        trend.rollup()
        with trend.db.read() as tx:
            minute = level_table(LEVELS.finest)
            anonymous = tx.execute(select(minute.c.users_sketch.is_(None)).where(minute.c.key == "c")).scalar()
        assert anonymous, "a row whose events have no user stores no sketch"


class TestSketchesOnlyWhereThereAreUsers:
    """A minute, or a group, without users takes the plain path: no sketch is built for it."""

    def _minutes(self) -> list[dict[str, object]]:
        anonymous = [{"event": "search", "key": f"k{n % 7}", "ts": (T0 - 180_000) / 1000} for n in range(70)]
        mixed = [{"event": "search", "key": f"k{n % 7}", "ts": (T0 - 120_000) / 1000,
                  **({"user_id": f"u{n % 5}"} if n % 7 < 3 else {})} for n in range(70)]
        return anonymous + mixed

    def test_every_level_equals_its_raw_events(self, trend: Trend) -> None:
        trend.ingest(self._minutes())
        trend.rollup()
        assert_levels_equal(trend, stored_events(trend), T0)
        with trend.db.read() as tx:
            minute = level_table(LEVELS.finest)
            rows = tx.execute(select(minute.c.bucket, minute.c.key).where(minute.c.users_sketch.is_(None))).all()
        without = {(int(row.bucket), str(row.key)) for row in rows}
        assert without == {(T0 - 180_000, f"k{n}") for n in range(7)} | {(T0 - 120_000, f"k{n}") for n in (3, 4, 5, 6)}

    def test_sqlite_builds_a_sketch_only_for_groups_with_users(self, trend: Trend, backend: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        if backend != "sqlite":
            pytest.skip("the SQL function is SQLite's; PostgreSQL's plain path is the test above")
        made = []
        original = sketches._SketchOf.__init__

        def counted(self: sketches._SketchOf) -> None:
            made.append(self)
            original(self)

        monkeypatch.setattr(sketches._SketchOf, "__init__", counted)
        trend.ingest(self._minutes())
        trend.rollup("1m")
        assert len(made) == 3  # k0, k1 and k2 of the mixed minute: never one per anonymous group


class TestNormalization:
    # NFC Hangul (Windows), NFD Hangul (macOS), spaces, case, full width.
    VARIANTS: ClassVar[list[str]] = ["우산", unicodedata.normalize("NFD", "우산"), " 우산 ", "Umbrella", "umbrella ",
                                     "ｕｍｂｒｅｌｌａ", "rain   BOOTS", " rain boots"]

    def test_variants_land_on_one_key_and_queries_find_it(self, trend: Trend) -> None:
        """NFD and NFC Hangul, case, full width and spaces: one key each, and a query by any variant finds it."""
        trend.ingest([{"event": "search", "key": key, "ts": (T0 - 60_000) / 1000} for key in self.VARIANTS])
        top = trend.top("search", window="5m")
        assert {(item.key, item.count) for item in top.items} == {("우산", 3), ("umbrella", 3), ("rain boots", 2)}
        assert trend.series("search", key="ＵＭＢＲＥＬＬＡ", interval="5m").points[-1].count == 3

    def test_a_key_that_normalizes_to_nothing_is_refused(self, trend: Trend) -> None:
        result = trend.ingest([{"event": "search", "key": "   ", "ts": (T0 - 60_000) / 1000}], strict=False)
        assert (result.accepted, result.rejected) == (0, 1)
        assert result.errors[0].field == "key"
        assert "empty after normalization" in result.errors[0].message

    def test_none_keeps_keys_as_sent(self, make_trend: TrendFactory) -> None:
        trend = make_trend(key_normalization="none")
        trend.ingest([{"event": "search", "key": key, "ts": (T0 - 60_000) / 1000} for key in ("A", "a", "a ")])
        assert len(trend.top("search", window="5m").items) == 3

    def test_changing_the_setting_on_a_database_stops_start_up_with_what_to_do(
        self, make_trend: TrendFactory
    ) -> None:
        make_trend().db.ensure_schema()
        with pytest.raises(Exception, match="TREND_KEY_NORMALIZATION") as info:
            make_trend(key_normalization="nfc").db.ensure_schema()
        assert "nfkc_casefold" in str(info.value)


class TestUpgrade:
    def test_buckets_with_raw_events_are_recomputed_and_older_ones_read_null(self, make_trend: TrendFactory,
                                                                             clock: FakeClock) -> None:
        """Going from schema 2 to 3: rows get a sketch column; minutes whose raw events remain are marked and
        recomputed with users; older buckets (raw events gone) answer users: null, not 0."""
        hour = T0 - T0 % HOUR_MS - 2 * HOUR_MS
        old = make_trend()
        old.ingest([{"event": "search", "key": "k", "user_id": f"u{n}", "ts": (hour + n * 60_000) / 1000}
                    for n in range(90)])
        old.rollup()
        with old.db.write() as tx:  # what a schema-2 database looks like, with raw events of its first hour gone
            for table in (level.table for level in old.levels):
                tx.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN users_sketch")
                tx.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN user_events")
            tx.exec_driver_sql("DELETE FROM trend_schema WHERE name IN ('users_since', 'key_normalization')")
            tx.exec_driver_sql("UPDATE trend_schema SET value = '2' WHERE name = 'version'")
            tx.exec_driver_sql(f"DELETE FROM fact_events WHERE minute < {hour + HOUR_MS}")
        old.close()
        upgraded = make_trend()
        upgraded.db.ensure_schema()
        assert len([m for m in markers(upgraded) if m[0] == "1m"]) == 30  # the minutes still in fact_events
        upgraded.rollup()
        series = upgraded.series("search", interval="1h", start_ms=hour, end_ms=hour + 2 * HOUR_MS - 1)
        assert [(p.count, p.measures["users_sketch"]) for p in series.points] == [(60, None), (30, 30)]


class TestRollingUpgrade:
    def test_a_runner_refuses_a_database_migrated_by_a_newer_release(self, trend: Trend,
                                                                      trend_logs: pytest.LogCaptureFixture) -> None:
        trend.ingest([{"event": "search", "key": "k", "user_id": "u", "ts": (T0 - 120_000) / 1000}])
        with trend.db.write() as tx:
            tx.exec_driver_sql(f"UPDATE trend_schema SET value = '{SCHEMA_VERSION + 1}' WHERE name = 'version'")
        [report] = trend.rollup("1m")
        assert report.outcome == "failed"
        assert "refuses to process until it is upgraded" in (report.error or "")
        assert any("refused" in r.getMessage() for r in trend_logs.records if r.levelname == "ERROR")
        with trend.db.read() as tx:
            assert tx.exec_driver_sql("SELECT count(*) FROM agg_1m").scalar() == 0


class TestNormalizationEveryPath:
    def test_http_and_the_cli_normalize_too(self, trend: Trend, database_url: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """HTTP and the CLI's file ingest store keys as Python's ingest does."""
        variants = TestNormalization.VARIANTS[:3]
        with TestClient(create_app(trend=trend)) as client:
            response = client.post("/v1/events", json=[{"event": "search", "key": key, "ts": (T0 - 60_000) / 1000}
                                                       for key in variants])
        assert response.status_code == 202
        path = tmp_path / "events.csv"
        now = time.time()
        path.write_text("event,key,ts\n" + "".join(f"search,{key},{now - 60}\n" for key in variants))
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["ingest", str(path)], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        with trend.db.read() as tx:
            keys = set(tx.execute(select(fact_events.c.key).distinct()).scalars())
        assert keys == {"우산"}  # the demo writes through Trend.ingest, the Python path tested above


class TestEraseUser:
    def test_a_person_erased_is_gone_from_raw_events_reads_and_every_level(self, trend: Trend,
                                                                           clock: FakeClock) -> None:
        trend.ingest([{"event": "search", "key": "k", "user_id": user, "ts": (T0 - m * MINUTE_MS) / 1000}
                      for m in range(2, 40) for user in ("keep", "erase-me")])
        trend.rollup()
        with TestClient(create_app(trend=trend)) as client:
            body = client.delete("/v1/users/erase-me").json()
        assert (body["events"], body["minutes"]) == (38, 38)
        top = trend.top("search", window="1h")
        assert (top.items[0].count, top.items[0].users) == (38, 1)  # exact before any run: dirty minutes read raw
        clock.advance(2 * HOUR_MS)
        trend.rollup()
        assert table_count(trend, "erase-me") == 0
        with trend.db.read() as tx:
            assert tx.exec_driver_sql("SELECT sum(count) FROM agg_1h").scalar() == 38


    def test_the_cli_erases_and_recomputes(self, make_trend: TrendFactory, database_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        trend = make_trend(clock=SystemClock())  # the CLI runs on the system clock
        now = time.time()
        trend.ingest([{"event": "search", "key": "k", "user_id": "gone", "ts": now - 600}])
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["erase-user", "gone", "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["events"] == 1
        assert table_count(trend, "gone") == 0


def table_count(trend: Trend, user_id: str) -> int:
    with trend.db.read() as tx:
        found = tx.execute(text("SELECT count(*) FROM fact_events WHERE user_id = :u"), {"u": user_id}).scalar()
    return int(found or 0)


class TestWhereTheSketchesAre:
    def test_status_says_how_users_are_sketched_and_the_column_matches(
            self, trend: Trend, backend: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """A PostgreSQL without postgresql-hll stores DataSketches' bytes and ``trend status`` says the
        sketches are folded in trend's process; with it, the column is hll and they are merged in SQL."""
        trend.db.ensure_schema()
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["status", "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        said = json.loads(result.stdout)["database"]["users_sketches"]
        if backend == "sqlite":
            assert said.startswith("DataSketches HLL, as SQL functions")
            return
        if backend == "mariadb":
            assert said.startswith("DataSketches HLL in trend's process")
            return
        with trend.db.read() as tx:
            stored = tx.exec_driver_sql("SELECT udt_name FROM information_schema.columns WHERE table_schema = "
                                        "current_schema() AND table_name = 'agg_1h' AND column_name = "
                                        "'users_sketch'").scalar()
        in_python = backend == "postgres-python-sketches"
        assert stored == ("bytea" if in_python else "hll")
        assert said.startswith("DataSketches HLL in trend's process" if in_python else "postgresql-hll")

    def test_insisting_on_the_other_kind_of_sketch_stops_start_up(self, make_trend: TrendFactory,
                                                                  backend: str) -> None:
        if backend in ("sqlite", "mariadb"):
            pytest.skip("TREND_HLL chooses between PostgreSQL's two kinds of sketch")
        make_trend().db.ensure_schema()
        other = "on" if backend == "postgres-python-sketches" else "off"
        with pytest.raises(ConfigError, match="TREND_HLL") as info:
            make_trend(hll=other).db.ensure_schema()
        assert "leave TREND_HLL at auto" in str(info.value)
