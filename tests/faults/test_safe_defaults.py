"""Safe by default: no way in with an empty key, keyless mode closed to other sites' pages, no 5xx on
bad input, no look-alike keys, small error bodies, no readable trace after an erasure, and no good CSV
line lost to a bad one (docs/reliability.md, "Safe by default")."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import T0, TrendFactory
from tests.reference import assert_levels_equal, stored_events
from trend.api.app import create_app
from trend.api.errors import error_response
from trend.cli import main
from trend.config import load_settings
from trend.errors import ConfigError, DatabaseUnavailableError, StorageError, TransactionAbortedError
from trend.keys import INVISIBLE_RANGES, has_invisible, normalizer
from trend.model import MINUTE_MS
from trend.service import Trend
from trend.storage.write import alerts as alert_storage

pytestmark = pytest.mark.faults

CLOSED = (T0 - 2 * MINUTE_MS) / 1000  # an event time in a closed minute


def _client(trend: Trend, base_url: str = "http://127.0.0.1:8000") -> TestClient:
    return TestClient(create_app(trend=trend), base_url=base_url, raise_server_exceptions=False)


class TestCors:
    SHOP = "https://shop.example"

    def _preflight(self, client: TestClient, origin: str) -> dict[str, str]:
        answer = client.options("/v1/events", headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type"})
        return dict(answer.headers)

    def test_off_by_default_no_page_of_another_origin_may_read(self, trend: Trend) -> None:
        with _client(trend) as client:
            answer = client.get("/v1/dimensions", headers={"origin": self.SHOP})
            assert answer.status_code == 200
            assert "access-control-allow-origin" not in answer.headers
            assert "access-control-allow-origin" not in self._preflight(client, self.SHOP)

    def test_a_listed_origin_may_call_with_its_key_and_read_the_etag(self, make_trend: TrendFactory) -> None:
        trend = make_trend(api_key="k", cors_origins=[self.SHOP])
        with _client(trend) as client:
            allowed = self._preflight(client, self.SHOP)
            assert allowed["access-control-allow-origin"] == self.SHOP
            assert "authorization" in allowed["access-control-allow-headers"].lower()
            assert "POST" in allowed["access-control-allow-methods"]
            answer = client.get("/v1/top", params={"event": "search"}, headers={"origin": self.SHOP})
            assert answer.headers["access-control-allow-origin"] == self.SHOP
            assert "etag" in answer.headers["access-control-expose-headers"].lower()
            other = client.get("/v1/dimensions", headers={"origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
            assert "access-control-allow-origin" not in self._preflight(client, "https://evil.example")

    def test_keyless_a_listed_origin_may_write_and_no_other(self, make_trend: TrendFactory) -> None:
        trend = make_trend(host="127.0.0.1", cors_origins=[self.SHOP, "*"])
        event = {"event": "search", "key": "k", "ts": CLOSED}
        with _client(trend) as client:
            page = {"origin": self.SHOP, "sec-fetch-site": "cross-site"}
            assert client.post("/v1/events", json=event, headers=page).status_code == 202
            # * lets every page read, never write without a key.
            refused = client.post("/v1/events", json=event, headers={"origin": "https://evil.example"})
            assert refused.status_code == 403
            assert refused.headers["access-control-allow-origin"] == "*"  # the page can read why
        assert len(stored_events(trend)) == 1

    @pytest.mark.parametrize("value", ["https://shop.example/", "shop.example", "ftp://shop.example",
                                       "https://shop.example/path"])
    def test_an_origin_that_is_not_one_stops_start_up_naming_the_setting(
            self, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_CORS_ORIGINS", f"https://ok.example,{value}")
        with pytest.raises(ConfigError) as refused:
            load_settings()
        assert refused.value.setting == "TREND_CORS_ORIGINS"
        assert value in str(refused.value)


class TestKeys:
    @pytest.mark.parametrize("variable", ["TREND_API_KEY", "TREND_READ_KEY"])
    @pytest.mark.parametrize("value", ["", "   ", "\t"])
    def test_a_set_but_blank_key_stops_start_up_naming_it(self, variable: str, value: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError) as refused:
            load_settings()
        assert refused.value.setting == variable
        result = CliRunner().invoke(main, ["status"])
        assert result.exit_code == 2
        assert variable in result.output

    def test_serve_beyond_loopback_without_a_key_refuses_to_start(self, database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--no-worker"])
        assert result.exit_code == 2
        assert "TREND_API_KEY" in result.output
        assert "--allow-keyless" in result.output


class TestKeylessMode:
    @pytest.fixture
    def keyless(self, make_trend: TrendFactory) -> Iterator[tuple[Trend, TestClient]]:
        trend = make_trend(host="127.0.0.1", allowed_hosts=["trend.internal"])
        with _client(trend) as client:
            yield trend, client

    @pytest.mark.parametrize(("host", "served"), [
        ("127.0.0.1:8000", True), ("localhost:8000", True), ("[::1]:8000", True), ("trend.internal", True),
        ("evil.example", False), ("evil.example:8000", False), ("127.0.0.1.evil.example", False),
    ])
    def test_only_this_servers_own_names_are_served(self, keyless: tuple[Trend, TestClient], host: str,
                                                    served: bool) -> None:
        """A DNS-rebinding page sends its own name in Host: it gets nothing, not even the dashboard."""
        _, client = keyless
        for path in ("/v1/dimensions", "/"):
            assert (client.get(path, headers={"host": host}).status_code == 200) is served

    def test_a_write_from_another_sites_page_is_refused_and_stores_nothing(
            self, keyless: tuple[Trend, TestClient]) -> None:
        trend, client = keyless
        event = {"event": "search", "key": "k", "ts": CLOSED}
        for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}):
            assert client.post("/v1/events", json=event, headers=headers).status_code == 403
            assert client.post("/v1/jobs/retention/run", headers=headers).status_code == 403
        assert stored_events(trend) == []
        # The dashboard's own page, and programs that send no Origin, still write.
        assert client.post("/v1/events", json=event, headers={"origin": "http://127.0.0.1:8000"}).status_code == 202
        assert client.post("/v1/events", json=event).status_code == 202
        assert len(stored_events(trend)) == 2

    def test_events_without_a_json_content_type_are_refused(self, keyless: tuple[Trend, TestClient]) -> None:
        """A page can POST a typeless Blob to another site without a preflight."""
        trend, client = keyless
        body = json.dumps({"event": "search", "key": "k", "ts": CLOSED}).encode()
        response = client.post("/v1/events", content=body, headers={"content-type": ""})
        assert response.status_code == 415
        assert stored_events(trend) == []

    def test_with_a_key_the_guard_is_not_needed_and_not_installed(self, make_trend: TrendFactory) -> None:
        with _client(make_trend(host="127.0.0.1", api_key="k")) as client:
            assert client.get("/v1/dimensions", headers={"host": "trend.example.com"}).status_code == 200


FAR_OUT = ["9999-12-31T23:59:00Z", "0001-01-01T00:00:00Z", "-1e11", "-1", "9999-12-31T14:00:00-14:00",
           "1969-12-31T23:59:00Z", "9000-01-01T00:00:00Z"]


class TestBadInput:
    @pytest.mark.parametrize("value", FAR_OUT)
    @pytest.mark.parametrize(("path", "name"), [("/v1/top", "at"), ("/v1/rising", "at"), ("/v1/series", "start"),
                                                ("/v1/series", "end")])
    def test_far_out_times_are_a_422_naming_the_parameter(self, trend: Trend, path: str, name: str,
                                                          value: str) -> None:
        trend.ingest([{"event": "search", "key": "k", "ts": CLOSED}])
        with _client(trend) as client:
            response = client.get(path, params={"event": "search", name: value})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == name

    def test_times_at_the_edges_of_the_range_are_answered(self, trend: Trend) -> None:
        trend.ingest([{"event": "search", "key": "k", "ts": CLOSED}])
        with _client(trend) as client:
            for at in ("1970-01-01T00:00:00Z", "8999-12-31T23:59:59Z"):
                assert client.get("/v1/top", params={"event": "search", "at": at}).status_code == 200

    @pytest.mark.parametrize(("path", "params", "field"), [
        ("/v1/top", {"event": "search", "segment": "a\x00b"}, "segment"),
        ("/v1/rising", {"event": "search", "segment": "\x00"}, "segment"),
        ("/v1/series", {"event": "search", "key": "a\x00b"}, "key"),
        ("/v1/top", {"event": "sea\x00rch"}, "event"),
    ])
    def test_nul_is_refused_before_any_sql(self, make_trend: TrendFactory, path: str, params: dict[str, str],
                                           field: str) -> None:
        """On an empty database too, where no known event stops the query first."""
        for trend in (make_trend(), make_trend()):
            with _client(trend) as client:
                response = client.get(path, params=params)
                assert response.status_code == 422, response.text
                assert response.json()["error"]["field"] == field
            trend.ingest([{"event": "search", "key": "k", "ts": CLOSED}])

    def test_nul_in_an_erased_user_id_is_a_422(self, trend: Trend) -> None:
        with _client(trend) as client:
            response = client.delete("/v1/users/a%00b")
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "user_id"

    def test_a_refused_statement_is_never_reported_as_an_unavailable_database(self, trend: Trend) -> None:
        """A real driver error of each kind, translated, then answered."""
        with pytest.raises(StorageError) as refused, trend.db.write() as tx:
            tx.exec_driver_sql("INSERT INTO rollup_dirty (level, bucket, version) VALUES (NULL, 1, 1)")
        assert not isinstance(refused.value, DatabaseUnavailableError | TransactionAbortedError)
        answer = error_response(refused.value)
        assert answer.status_code == 500
        assert "retry-after" not in answer.headers
        unavailable = error_response(DatabaseUnavailableError("database unavailable: connection refused"))
        assert unavailable.status_code == 503
        assert unavailable.headers["retry-after"] == "5"


class TestErrorBodies:
    def test_an_unknown_event_error_stays_small_however_many_events_exist(self, trend: Trend) -> None:
        trend.ingest([{"event": f"type-{n:05d}", "key": "k", "ts": CLOSED} for n in range(10_000)])
        with _client(trend) as client:
            response = client.get("/v1/top", params={"event": "nope"})
        assert response.status_code == 422
        assert len(response.content) < 2_000
        assert "and 9,980 more" in response.json()["error"]["message"]

    def test_a_batch_of_bad_events_lists_at_most_20_with_the_count(self, trend: Trend) -> None:
        with _client(trend) as client:
            response = client.post("/v1/events", json=[{"event": "search", "key": ""}] * 5_000)
        error = response.json()["error"]
        assert response.status_code == 422
        assert error["errors"] == 5_000
        assert [p["index"] for p in error["problems"]] == list(range(20))
        assert len(response.content) < 4_000


# Each displays as "umbrella" and differs from it by characters that show nothing.
LOOK_ALIKES = ["umbrella", "um\u200bbrella", "\u202eumbrella", "umbrella\ufe0f", "um\u00adbrella",
               "\u2066umbrella\u2069", "um\u200dbrella", "\ufeffumbrella", "umbrell\u034fa", "umbrella\u200e",
               "um\U000e0041brella", "umb\x01rella"]


class TestLookAlikeKeys:
    def test_invisible_characters_do_not_make_new_keys(self, trend: Trend) -> None:
        events = [{"event": "search", "key": key, "segment": f"k\u200br{n % 2 * ' '}", "ts": CLOSED}
                  for n, key in enumerate(LOOK_ALIKES)]
        trend.ingest(events)
        trend.rollup()
        top = trend.top("search", window="5m")
        assert [(item.key, item.count) for item in top.items] == [("umbrella", len(LOOK_ALIKES))]
        assert trend.dimensions()["search"] == ["kr"]
        stored = stored_events(trend)
        assert {(e["key"], e["segment"]) for e in stored} == {("umbrella", "kr")}
        assert_levels_equal(trend, stored, T0)

    def test_the_documented_ranges_are_what_is_removed(self) -> None:
        normalize = normalizer("nfkc_casefold")
        for first, last in INVISIBLE_RANGES:
            for code in {first, last}:
                assert has_invisible(chr(code))
                assert normalize(f"a{chr(code)}b") == "ab", hex(code)
        for visible in ("우산", "ａ", "é", "😀", "a b"):
            assert not has_invisible(visible)

    def test_an_upgrade_merges_stored_look_alikes_so_every_level_equals_its_raw_events(
            self, make_trend: TrendFactory) -> None:
        """A database of the release before: its raw events hold look-alike keys, already rolled up."""
        old = make_trend()
        old.ingest([{"event": "search", "key": "umbrella", "segment": "kr", "ts": CLOSED}])
        with old.db.write() as tx:
            for n, key in enumerate(LOOK_ALIKES[1:]):
                tx.exec_driver_sql(
                    "INSERT INTO fact_events (ts, event, segment, key, value, received_at, minute) "
                    f"VALUES ({T0 - 2 * MINUTE_MS + n}, 'search', 'k\u200br', '{key}', 1, {T0}, {T0 - 2 * MINUTE_MS})")
            tx.exec_driver_sql("INSERT INTO trend_dimensions (event, segment) VALUES ('search', 'k\u200br')")
        old.rollup()
        assert len(old.top("search", window="5m", limit=20).items) == len(LOOK_ALIKES)
        with old.db.write() as tx:
            tx.exec_driver_sql("UPDATE trend_schema SET value = '6' WHERE name = 'version'")
        old.close()
        upgraded = make_trend()
        upgraded.rollup()
        top = upgraded.top("search", window="5m")
        assert [(item.key, item.count) for item in top.items] == [("umbrella", len(LOOK_ALIKES))]
        stored = stored_events(upgraded)
        assert len(stored) == len(LOOK_ALIKES)
        assert {(e["key"], e["segment"]) for e in stored} == {("umbrella", "kr")}
        assert_levels_equal(upgraded, stored, T0)
        assert "kr" in upgraded.dimensions()["search"]


class TestErasure:
    PERSON = "zed-the-erased-person-7f3a"
    THEIR_KEY = "a key only they sent"

    def _events(self) -> list[dict[str, object]]:
        return [{"event": "search", "key": self.THEIR_KEY if n % 2 else "shared", "user_id": self.PERSON,
                 "ts": CLOSED} for n in range(400)] + [{"event": "search", "key": "shared", "user_id": "other",
                                                        "ts": CLOSED}]

    def test_sqlite_files_hold_nothing_of_the_person_afterwards(self, make_trend: TrendFactory, backend: str,
                                                                database_url: str) -> None:
        if backend != "sqlite":
            pytest.skip("reads the SQLite file and its log; PostgreSQL's part is in docs/operations.md")
        trend = make_trend()
        trend.ingest(self._events())
        trend.rollup()
        files = [Path(database_url.removeprefix("sqlite:///") + suffix) for suffix in ("", "-wal")]
        held = b"".join(path.read_bytes() for path in files if path.exists())
        assert self.PERSON.encode() in held  # the check can see the person while they are there
        assert trend.erase_user(self.PERSON).events == 400
        trend.rollup()
        held = b"".join(path.read_bytes() for path in files if path.exists())
        assert self.PERSON.encode() not in held

    def test_alert_firings_of_the_persons_keys_are_redacted_and_never_sent(self, trend: Trend) -> None:
        trend.ingest(self._events())
        with trend.db.write() as tx:
            rule = alert_storage.insert_rule(tx, {
                "name": "r", "event": "search", "segment": None, "by": "count", "condition": "threshold",
                "window": "1h", "key": None, "min_score": None, "min_count": None, "top": None, "threshold": 1,
                "url": "https://hooks.example.com/x", "secret": "s", "cooldown_ms": 60_000}, T0)
            key = self.THEIR_KEY
            for n, (status, firing_key) in enumerate([("delivered", key), ("pending", key), ("pending", "shared"),
                                                      ("pending", "unrelated")]):
                body = json.dumps({"key": firing_key, "figures": {"users": 1}})
                alert_storage.insert_delivery(tx, f"d{n}", rule, firing_key, body, T0)
                if status == "delivered":
                    [leased] = alert_storage.lease_due(tx, T0, 60_000, 1, only=f"d{n}")
                    alert_storage.finish_attempt(tx, f"d{n}", lease=leased["lease_until"], status="delivered",
                                                 attempts=1, next_attempt_at=T0, last_status=200, last_error=None,
                                                 delivered_at=T0)
            alert_storage.record_fired(tx, rule, key, T0)
        trend.erase_user(self.PERSON)
        with trend.db.read() as tx:
            found = {d["id"]: d for d in alert_storage.deliveries(tx)}
            cooling = alert_storage.cooling(tx, rule, [key], 0)
        for redacted in ("d0", "d1", "d2"):
            assert found[redacted]["key"] is None
            assert self.THEIR_KEY not in found[redacted]["body"]
            assert "shared" not in found[redacted]["body"]
        assert found["d1"]["status"] == "failed"
        assert found["d2"]["status"] == "failed"
        assert (found["d3"]["status"], found["d3"]["key"]) == ("pending", "unrelated")
        assert cooling == set()


class TestCsv:
    def _ingest(self, text: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["ingest", "--format", "csv", "--json", "-"], input=text)
        summary: dict[str, object] = json.loads(result.stdout)
        return summary

    def test_an_unterminated_quote_is_reported_on_its_own_line_and_costs_no_good_line(
            self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        now = time.time() - 60
        lines = ["event,key,ts", *[f"search,k{n},{now}" for n in range(2, 8)], f'search,"unterminated,{now}',
                 f"search,k9,{now}", f"search,k10,{now}"]
        summary = self._ingest("\n".join(lines) + "\n", database_url, monkeypatch)
        assert [e["line"] for e in summary["errors"]] == [8]  # type: ignore[attr-defined]
        assert summary["accepted"] == 8

    @pytest.mark.parametrize("cell", ['bad"quote', 'bad"', '"a"b', 'a""b'])
    def test_a_quote_inside_an_unquoted_field_is_refused(self, cell: str, database_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        now = time.time() - 60
        summary = self._ingest(f"event,key,ts\nsearch,{cell},{now}\nsearch,good,{now}\n", database_url, monkeypatch)
        assert [e["line"] for e in summary["errors"]] == [2]  # type: ignore[attr-defined]
        assert summary["accepted"] == 1

    def test_quoted_fields_with_commas_and_doubled_quotes_are_read(self, trend: Trend, database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        now = time.time() - 60
        summary = self._ingest(f'event,key,ts\nsearch,"a, ""b""",{now}\n', database_url, monkeypatch)
        assert summary["accepted"] == 1
        assert [e["key"] for e in stored_events(trend)] == ['a, "b"']
