"""Alerts at their edges: one bad rule, address or id never stops or misdirects the others (docs/alerts.md).
Receivers are real local HTTP servers."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import TrendFactory
from tests.receiver import Receiver
from trend.alerts import webhook
from trend.api.app import create_app
from trend.cli import main
from trend.clock import FakeClock
from trend.config import load_settings
from trend.errors import ConfigError
from trend.model import MINUTE_MS
from trend.service import Trend
from trend.storage.write import alerts as store

ALLOW = {"alert_webhook_allow": ["127.0.0.1/32"], "alert_retry_base": "30s"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _threshold_rule(trend: Trend, url: str, key: str = "k") -> dict[str, Any]:
    return trend.add_alert(event="search", condition="threshold", key=key, threshold=1, window="15m", url=url)


def _ingest(trend: Trend, clock: FakeClock, key: str = "k") -> None:
    trend.ingest([{"event": "search", "key": key, "ts": (clock.now_ms() - MINUTE_MS) / 1000}])


class TestIsolation:
    def test_a_failing_rule_is_recorded_on_it_and_the_others_still_fire_and_deliver(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        trend = make_trend(**ALLOW)
        _ingest(trend, clock)
        good = _threshold_rule(trend, receiver.url)
        # A rule a checker would refuse now, as an earlier release could have stored it.
        with trend.db.write() as tx:
            bad = store.insert_rule(tx, {"name": "broken", "event": "search", "by": "nonsense",
                                         "condition": "enters_top", "window": "1h", "top": 3, "url": receiver.url,
                                         "secret": "s" * 24, "cooldown_ms": 60_000}, clock.now_ms())
        [report] = trend.run_job("alerts")
        assert report.outcome == "ran"
        assert [json.loads(r["body"])["rule"]["id"] for r in receiver.received] == [good["id"]]
        rules = {rule["id"]: rule for rule in trend.alert_rules()}
        assert "by" in (rules[bad]["last_error"] or "")
        assert rules[good["id"]]["last_error"] is None
        with TestClient(create_app(trend=trend)) as client:
            health = client.get("/healthz").json()
            listed = {r["id"]: r for r in client.get("/v1/alerts").json()["rules"]}
            metrics = client.get("/metrics").text
        assert health["alerts"] == {"failing_rules": 1}
        assert health["status"] == "degraded"
        assert listed[bad]["last_error"]
        assert listed[bad]["last_error_at"]
        assert "trend_alert_rules_failing 1.0" in metrics
        # Mended, the next minute's evaluation clears it.
        with trend.db.write() as tx:
            tx.exec_driver_sql(f"UPDATE alert_rules SET \"by\" = 'count' WHERE id = {bad}")
        clock.advance(MINUTE_MS)
        trend.run_job("alerts")
        assert trend.alerts.failing_rules() == 0

    def test_a_rule_on_an_event_not_stored_yet_is_allowed_with_a_warning_and_fires_when_it_comes(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        trend = make_trend(**ALLOW)
        _ingest(trend, clock)
        with TestClient(create_app(trend=trend)) as client:
            response = client.post("/v1/alerts", json={"event": "serach", "condition": "threshold", "key": "k",
                                                       "threshold": 1, "window": "15m", "url": receiver.url})
        assert response.status_code == 201
        assert "serach" in response.json()["warning"]
        [report] = trend.run_job("alerts")
        assert report.outcome == "ran"
        assert trend.alerts.failing_rules() == 0
        assert receiver.received == []
        trend.ingest([{"event": "serach", "key": "k", "ts": (clock.now_ms() - MINUTE_MS) / 1000}])
        clock.advance(MINUTE_MS)
        trend.run_job("alerts")
        assert len(receiver.received) == 1


class TestUpgrade:
    def test_a_database_of_schema_7_gains_the_rules_error_columns(self, make_trend: TrendFactory,
                                                                  receiver: Receiver) -> None:
        old = make_trend(**ALLOW)
        _threshold_rule(old, receiver.url)
        with old.db.write() as tx:
            tx.exec_driver_sql("ALTER TABLE alert_rules DROP COLUMN last_error")
            tx.exec_driver_sql("ALTER TABLE alert_rules DROP COLUMN last_error_at")
            tx.exec_driver_sql("UPDATE trend_schema SET value = '7' WHERE name = 'version'")
        old.close()
        upgraded = make_trend(**ALLOW)
        [rule] = upgraded.alert_rules()
        assert (rule["last_error"], rule["last_error_at"]) == (None, None)


class TestValidation:
    @pytest.mark.parametrize(("field", "value"), [
        ("min_score", "nan"), ("min_score", "inf"), ("min_score", "-Infinity"), ("min_score", 1e300),
        ("url", "http://127.0.0.1:99999/h"), ("url", "http://127.0.0.1:abc/h"), ("url", "http://[::1/h"),
    ])
    def test_bad_numbers_and_ports_are_a_422_naming_the_field(self, trend: Trend, field: str,
                                                              value: object) -> None:
        rule = {"event": "search", "condition": "rising", "url": "https://hooks.example.com/x", field: value}
        with TestClient(create_app(trend=trend)) as client:
            response = client.post("/v1/alerts", json=rule)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
        assert trend.alert_rules() == []

    def test_a_bad_port_in_the_cli_is_a_message_not_a_traceback(self, database_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["alerts", "add", "--event", "search", "--condition", "rising",
                                           "--url", "http://127.0.0.1:99999/h"])
        assert result.exit_code == 2
        assert "url" in result.output
        assert "Traceback" not in result.output


NOT_PUBLIC = ["100.100.100.200", "100.64.0.1", "fec0::1", "2002:7f00:1::1", "64:ff9b::7f00:1", "::ffff:127.0.0.1",
              "::127.0.0.1", "64:ff9b:1::a00:1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "169.254.169.254",
              "10.0.0.1", "fd00::1", "0.0.0.0", "224.0.0.1"]
PUBLIC = ["8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808", "2002:808:808::1"]


class TestAddresses:
    @pytest.mark.parametrize("address", NOT_PUBLIC)
    def test_addresses_that_are_not_public_are_refused_however_they_are_written(self, address: str) -> None:
        assert webhook.is_internal(ipaddress.ip_address(address))
        literal = f"[{address}]" if ":" in address else address
        with pytest.raises(webhook.RefusedAddressError):
            webhook.check_address(f"http://{literal}:8080/hook", [])

    @pytest.mark.parametrize("address", PUBLIC)
    def test_public_addresses_pass(self, address: str) -> None:
        assert not webhook.is_internal(ipaddress.ip_address(address))

    def test_the_allow_list_names_a_port_when_it_wants_one(self) -> None:
        allow = webhook.allowed_networks(["127.0.0.1:9000", "[::1]:9000", "10.0.0.0/8"])
        assert webhook.check_address("http://127.0.0.1:9000/h", allow) == ["127.0.0.1"]
        assert webhook.check_address("http://[::1]:9000/h", allow) == ["::1"]
        assert webhook.check_address("http://10.1.2.3:5432/h", allow) == ["10.1.2.3"]
        for refused in ("http://127.0.0.1:9001/h", "http://127.0.0.1/h", "http://[::1]:22/h"):
            with pytest.raises(webhook.RefusedAddressError):
                webhook.check_address(refused, allow)

    @pytest.mark.parametrize("entry", ["127.0.0.1:99999", "127.0.0.1:abc", "[::1]x", "not-an-address"])
    def test_a_bad_allow_entry_stops_start_up_naming_the_setting(self, entry: str) -> None:
        with pytest.raises(ConfigError) as refused:
            load_settings(alert_webhook_allow=[entry])
        assert refused.value.setting == "TREND_ALERT_WEBHOOK_ALLOW"

    def test_an_address_refused_where_it_is_delivered_is_retried_not_failed_for_good(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        """The rule was added where the allow-list named the receiver; the delivering process's does not."""
        adder = make_trend(**ALLOW)
        _ingest(adder, clock)
        rule = _threshold_rule(adder, receiver.url)
        server = make_trend(alert_retry_base="30s")  # started without TREND_ALERT_WEBHOOK_ALLOW
        server.run_job("alerts")
        [delivery] = server.alert_deliveries(int(rule["id"])) or []
        assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
        assert "TREND_ALERT_WEBHOOK_ALLOW" in delivery["last_error"]
        assert receiver.received == []


class TestIdentity:
    def test_a_deleted_rules_firings_never_reach_a_new_rule(self, make_trend: TrendFactory, clock: FakeClock,
                                                           receiver: Receiver) -> None:
        trend = make_trend(**ALLOW)
        _ingest(trend, clock)
        receiver.answers = [500]  # the first firing waits for a retry
        old = _threshold_rule(trend, receiver.url)
        trend.run_job("alerts")
        trend.remove_alert(int(old["id"]))
        new = _threshold_rule(trend, receiver.url, key="other")
        assert new["id"] != old["id"]
        with trend.db.read() as tx:
            [cancelled] = store.deliveries(tx, int(old["id"]))
        assert cancelled["status"] == "failed"
        assert "deleted" in cancelled["last_error"]
        clock.advance(10 * MINUTE_MS)
        trend.run_job("alerts")
        assert len(receiver.received) == 1  # the first attempt only; never again, under any rule


class TestSecrets:
    def test_readers_see_the_webhooks_scheme_and_host_only(self, make_trend: TrendFactory) -> None:
        trend = make_trend(api_key="admin-key-1234567", **ALLOW)
        trend.add_alert(event="search", condition="rising", url="https://user:pw@127.0.0.1:8443/T0/B1/xyz?t=1")
        with TestClient(create_app(trend=trend)) as client:
            shown = client.get("/v1/alerts").json()["rules"][0]["url"]
            admin = client.get("/v1/alerts", headers={"Authorization": "Bearer admin-key-1234567"}).json()
        assert shown == "https://127.0.0.1:8443"
        assert admin["rules"][0]["url"] == "https://user:pw@127.0.0.1:8443/T0/B1/xyz?t=1"


class _Dripping:
    """A receiver that answers one byte every ``every`` seconds, forever: each read is quick, the whole
    answer never comes."""

    def __init__(self, every: float) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.every, self.stop = every, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                if self.stop.wait(self.every):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


class TestDelivery:
    def test_a_dripping_receiver_is_cut_off_at_the_deadline_while_the_others_are_delivered(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        dripping = _Dripping(every=0.3)
        try:
            trend = make_trend(alert_timeout_seconds=1.5, **ALLOW)
            _ingest(trend, clock)
            slow = _threshold_rule(trend, dripping.url)
            fast = _threshold_rule(trend, receiver.url)
            began = time.monotonic()
            trend.run_job("alerts")
            took = time.monotonic() - began
            [cut] = trend.alert_deliveries(int(slow["id"])) or []
            [made] = trend.alert_deliveries(int(fast["id"])) or []
        finally:
            dripping.close()
        assert (cut["status"], cut["attempts"]) == ("pending", 1)
        assert "1.5 s" in cut["last_error"]
        assert made["status"] == "delivered"
        assert took < 4  # one deadline, not the drip's whole answer (300 s) nor the two sends one after another
        # Every attempt of a batch ends before its lease: no other process can take it meanwhile.
        assert trend.alerts.lease_ms > 3 * 1.5 * 1000


class TestStandardWebhooks:
    def test_the_signature_matches_the_conventions_published_test_vector(self) -> None:
        assert webhook.standard_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                          1614265330, b'{"test": 2432232314}') == \
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    @pytest.mark.parametrize("secret", [None, "a-secret-of-my-own-choosing"])
    def test_a_real_delivery_verifies_with_the_conventions_library_and_a_replay_does_not(
            self, make_trend: TrendFactory, receiver: Receiver, secret: str | None) -> None:
        trend = make_trend(**ALLOW)
        rule = trend.add_alert(event="search", condition="rising", url=receiver.url,
                               **({"secret": secret} if secret else {}))
        sent = trend.test_alert(int(rule["id"]))
        assert sent is not None
        assert sent["status"] == "delivered"
        [got] = receiver.received
        headers, body = got["headers"], got["body"]
        verifier = Webhook(rule["secret"])
        assert verifier.verify(body, headers)["id"] == headers["webhook-id"]
        assert headers["X-Trend-Signature"] == webhook.signature(rule["secret"], body)  # the alias, for a release
        with pytest.raises(WebhookVerificationError):
            verifier.verify(body.replace(b'"test": true', b'"test": false'), headers)
        moved = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 600)}
        with pytest.raises(WebhookVerificationError):
            verifier.verify(body, moved)  # the timestamp is signed: it cannot be changed without the secret
        stale = webhook.signed_headers(rule["secret"], headers["webhook-id"], body, int(time.time()) - 600)
        with pytest.raises(WebhookVerificationError, match="too old"):
            verifier.verify(body, stale)  # a delivery captured and sent again ten minutes later


class TestCliTest:
    def test_alerts_test_exits_1_when_the_delivery_fails(self, database_url: str, receiver: Receiver,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        monkeypatch.setenv("TREND_ALERT_WEBHOOK_ALLOW", "127.0.0.1")
        added = CliRunner().invoke(main, ["alerts", "add", "--event", "search", "--condition", "rising",
                                          "--url", receiver.url, "--json"])
        rule_id = json.loads(added.stdout)["id"]
        receiver.answers = [500]
        assert CliRunner().invoke(main, ["alerts", "test", str(rule_id)]).exit_code == 1
        assert CliRunner().invoke(main, ["alerts", "test", str(rule_id)]).exit_code == 0
        # The failed test was answered to the person who asked: it is not left to be sent again later.
        shown = json.loads(CliRunner().invoke(main, ["alerts", "deliveries", str(rule_id), "--json"]).stdout)
        assert sorted(d["status"] for d in shown["deliveries"]) == ["delivered", "failed"]
        assert len(receiver.received) == 2

