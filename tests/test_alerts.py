"""Alerts end to end against a real local HTTP receiver that checks every signature (docs/alerts.md)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import TrendFactory
from tests.deadlines import scaled
from tests.receiver import Receiver
from tests.servers import EVERY_SECOND, Process, environment
from trend.alerts import webhook
from trend.api.app import create_app
from trend.cli import main
from trend.clock import FakeClock
from trend.errors import QueryError
from trend.model import MINUTE_MS
from trend.service import Trend


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


ALLOW = {"alert_webhook_allow": ["127.0.0.1/32"], "alert_retry_base": "30s"}


def _surge(trend: Trend, now: int) -> None:
    """A steady key in every window, and ``surge``, absent before, with 60 searches in the last 15 minutes."""
    events = [{"event": "search", "key": "steady", "user_id": f"s{n}", "ts": (now - n * 90_000 - 30_000) / 1000}
              for n in range(120)]
    events += [{"event": "search", "key": "surge", "user_id": f"u{n}", "ts": (now - 60_000 - n * 10_000) / 1000}
               for n in range(60)]
    trend.ingest(events)


def _rising_rule(trend: Trend, url: str, **extra: Any) -> dict[str, Any]:
    return trend.add_alert(event="search", condition="rising", window="15m", min_score=3, min_count=5, url=url,
                           cooldown="1h", **extra)


class TestFiring:
    def test_a_rising_key_fires_once_per_cooldown_with_the_documented_signed_body(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        trend = make_trend(**ALLOW)
        _surge(trend, clock.now_ms())
        rule = _rising_rule(trend, receiver.url)
        [report] = trend.run_job("alerts")
        assert report.outcome == "ran"
        [body] = receiver.bodies(rule["secret"])
        assert body["key"] == "surge"
        assert body["test"] is False
        assert set(body) == {"id", "test", "fired_at", "rule", "key", "figures", "window"}
        assert body["rule"]["id"] == rule["id"]
        assert "secret" not in body["rule"]
        # Every time in the body is ISO-8601 with its offset, the rule's own included.
        for moment in (body["fired_at"], body["rule"]["created_at"], body["window"]["start"]):
            assert datetime.fromisoformat(moment).utcoffset() is not None
        assert datetime.fromisoformat(body["rule"]["created_at"]).timestamp() * 1000 == clock.now_ms()
        assert body["figures"]["count"] == 60
        assert body["figures"]["score"] >= 3
        assert body["window"]["name"] == "15m"
        trend.run_job("alerts")  # the same minute: already evaluated
        clock.advance(MINUTE_MS)
        trend.ingest([{"event": "search", "key": "surge", "ts": (clock.now_ms() - 5_000) / 1000}] * 10)
        trend.run_job("alerts")  # still rising, but cooling down
        assert len(receiver.received) == 1
        [delivery] = trend.alert_deliveries(rule["id"]) or []
        assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("delivered", 1, 200)

    def test_enters_top_fires_for_a_newcomer_not_on_the_first_look(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        trend = make_trend(**ALLOW)
        trend.ingest([{"event": "search", "key": k, "ts": (clock.now_ms() - 120_000) / 1000}
                      for k, n in (("a", 5), ("b", 4), ("c", 3)) for _ in range(n)])
        rule = trend.add_alert(event="search", condition="enters_top", top=2, window="1h", url=receiver.url)
        trend.run_job("alerts")
        assert receiver.received == []  # the first evaluation learns the top (a, b)
        clock.advance(MINUTE_MS)
        trend.ingest([{"event": "search", "key": "c", "ts": (clock.now_ms() - 10_000) / 1000}] * 3)
        trend.run_job("alerts")
        [body] = receiver.bodies(rule["secret"])
        assert (body["key"], body["figures"]["rank"]) == ("c", 1)

    def test_a_threshold_fires_when_crossed_upwards(self, make_trend: TrendFactory, clock: FakeClock,
                                                    receiver: Receiver) -> None:
        trend = make_trend(**ALLOW)
        rule = trend.add_alert(event="search", condition="threshold", key="우산", threshold=10, window="1h",
                               by="users", url=receiver.url, cooldown="1m")
        one_person = {"event": "search", "key": "우산", "user_id": "same", "ts": (clock.now_ms() - 60_000) / 1000}
        trend.ingest([one_person] * 20)
        trend.run_job("alerts")
        assert receiver.received == []  # 20 searches, but 1 person
        clock.advance(MINUTE_MS)
        trend.ingest([{"event": "search", "key": "우산", "user_id": f"p{n}", "ts": (clock.now_ms() - 5_000) / 1000}
                      for n in range(12)])
        trend.run_job("alerts")
        clock.advance(5 * MINUTE_MS)
        trend.run_job("alerts")  # still above, past the cool-down: no new crossing
        [body] = receiver.bodies(rule["secret"])
        assert body["figures"]["users"] == 13


class TestDelivery:
    def test_failures_are_retried_with_backoff_and_survive_a_restart(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        receiver.answers = [500, 503]
        trend = make_trend(**ALLOW)
        _surge(trend, clock.now_ms())
        rule = _rising_rule(trend, receiver.url)
        trend.run_job("alerts")
        [pending] = trend.alert_deliveries(rule["id"]) or []
        assert (pending["status"], pending["attempts"], pending["last_status"]) == ("pending", 1, 500)
        assert pending["next_attempt_at"] == clock.now_ms() + 30_000
        assert "internals" not in json.dumps(pending)  # the receiver's answer is never kept
        trend.close()
        restarted = make_trend(**ALLOW)  # a new process on the same database
        clock.advance(20_000)
        restarted.run_job("alerts")
        assert len(receiver.received) == 1  # not yet due
        clock.advance(10_000)
        restarted.run_job("alerts")
        clock.advance(60_000)  # the second retry waits twice as long
        restarted.run_job("alerts")
        assert len(receiver.received) == 3
        bodies = receiver.bodies(rule["secret"])
        assert len({b["id"] for b in bodies}) == 1  # one delivery, the same id every time
        [done] = restarted.alert_deliveries(rule["id"]) or []
        assert (done["status"], done["attempts"]) == ("delivered", 3)

    def test_a_slow_receiver_times_out_and_a_dead_one_ends_failed(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        receiver.delay = 2.0
        trend = make_trend(alert_timeout_seconds=0.3, alert_max_attempts=2, **ALLOW)
        _surge(trend, clock.now_ms())
        rule = _rising_rule(trend, receiver.url)
        began = time.monotonic()
        trend.run_job("alerts")
        assert time.monotonic() - began < receiver.delay  # cut off at the deadline, not the answer's 2 s
        [first] = trend.alert_deliveries(rule["id"]) or []
        assert (first["status"], first["last_error"]) == ("pending", "no whole answer within 0.3 s")
        clock.advance(31_000)
        trend.run_job("alerts")
        [last] = trend.alert_deliveries(rule["id"]) or []
        assert (last["status"], last["attempts"]) == ("failed", 2)

    def test_a_test_delivery_is_marked_as_a_test(self, make_trend: TrendFactory, receiver: Receiver) -> None:
        trend = make_trend(**ALLOW)
        rule = _rising_rule(trend, receiver.url)
        delivery = trend.test_alert(rule["id"])
        assert delivery is not None
        assert delivery["status"] == "delivered"
        [body] = receiver.bodies(rule["secret"])
        assert (body["test"], body["key"]) == (True, None)
        assert trend.test_alert(rule["id"] + 1000) is None

    def test_two_replicas_evaluating_the_same_minute_fire_once(
            self, make_trend: TrendFactory, clock: FakeClock, receiver: Receiver) -> None:
        first, second = make_trend(**ALLOW), make_trend(**ALLOW)
        _surge(first, clock.now_ms())
        _rising_rule(first, receiver.url)
        threads = [threading.Thread(target=replica.run_job, args=("alerts",)) for replica in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(receiver.received) == 1


class TestForgeryGuard:
    def test_internal_addresses_are_refused_unless_allowed(self, make_trend: TrendFactory,
                                                           receiver: Receiver) -> None:
        trend = make_trend()
        for url in (receiver.url, "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]:9/x"):
            with pytest.raises(QueryError, match="TREND_ALERT_WEBHOOK_ALLOW") as refused:
                _rising_rule(trend, url)
            assert refused.value.parameter == "url"
        with pytest.raises(QueryError, match="http"):
            _rising_rule(trend, "file:///etc/passwd")
        assert trend.alert_rules() == []

    def test_redirects_are_not_followed(self, make_trend: TrendFactory, clock: FakeClock,
                                        receiver: Receiver) -> None:
        receiver.answers = [302]
        trend = make_trend(alert_max_attempts=1, **ALLOW)
        _surge(trend, clock.now_ms())
        rule = _rising_rule(trend, receiver.url)
        trend.run_job("alerts")
        [delivery] = trend.alert_deliveries(rule["id"]) or []
        assert (delivery["status"], delivery["last_status"]) == ("failed", 302)
        assert len(receiver.received) == 1

    def test_the_post_goes_to_the_address_that_was_checked(self, receiver: Receiver,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """DNS rebinding: the name answers an allowed address to the check and another to the
        connection. The POST must go to the checked address, naming the host in its Host header."""
        port = int(receiver.url.split(":")[2].split("/")[0])
        answers = iter(["127.0.0.1", "127.0.0.2"])  # the receiver listens on 127.0.0.1 only
        real = socket.getaddrinfo

        def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "hooks.example":
                address = next(answers, "127.0.0.2")
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        sent = webhook.send_now(f"http://hooks.example:{port}/hook", "s" * 24, "{}", "d-1",
                            webhook.allowed_networks(["127.0.0.1/32"]), 5)
        assert sent.ok, sent
        assert receiver.received[0]["headers"]["Host"] == f"hooks.example:{port}"


class TestInterfaces:
    def test_http_manages_rules_with_the_admin_key_and_reads_with_the_read_key(
            self, make_trend: TrendFactory, receiver: Receiver) -> None:
        trend = make_trend(api_key="admin-key-0123456789", read_key="read-key-0123456789", **ALLOW)
        admin = {"Authorization": "Bearer admin-key-0123456789"}
        reader = {"Authorization": "Bearer read-key-0123456789"}
        with TestClient(create_app(trend=trend)) as client:
            spec = {"event": "search", "condition": "enters_top", "top": 3, "url": receiver.url}
            assert client.post("/v1/alerts", json=spec, headers=reader).status_code == 403
            created = client.post("/v1/alerts", json=spec, headers=admin)
            assert created.status_code == 201
            rule = created.json()
            assert len(rule["secret"]) >= 16
            listed = client.get("/v1/alerts", headers=reader).json()["rules"]
            assert [r["id"] for r in listed] == [rule["id"]]
            assert "secret" not in listed[0]
            sent = client.post(f"/v1/alerts/{rule['id']}/test", headers=admin).json()
            assert (sent["status"], sent["test"]) == ("delivered", True)
            deliveries = client.get(f"/v1/alerts/{rule['id']}/deliveries", headers=reader).json()["deliveries"]
            assert [d["id"] for d in deliveries] == [sent["id"]]
            bad = client.post("/v1/alerts", json={**spec, "url": "http://10.0.0.1/"}, headers=admin)
            assert (bad.status_code, bad.json()["error"]["field"]) == (422, "url")
            assert client.delete(f"/v1/alerts/{rule['id']}", headers=admin).status_code == 204
            assert client.delete(f"/v1/alerts/{rule['id']}", headers=admin).status_code == 404

    def test_the_cli_adds_lists_tests_and_removes(self, database_url: str, receiver: Receiver,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        monkeypatch.setenv("TREND_ALERT_WEBHOOK_ALLOW", "127.0.0.1")
        run = CliRunner()
        added = run.invoke(main, ["alerts", "add", "--event", "search", "--condition", "rising", "--url", receiver.url,
                                  "--json"], catch_exceptions=False)
        assert added.exit_code == 0, added.stdout
        rule = json.loads(added.stdout)
        listed = run.invoke(main, ["alerts", "list", "--json"], catch_exceptions=False)
        assert [r["id"] for r in json.loads(listed.stdout)["rules"]] == [rule["id"]]
        tested = run.invoke(main, ["alerts", "test", str(rule["id"]), "--json"], catch_exceptions=False)
        assert json.loads(tested.stdout)["status"] == "delivered"
        shown = run.invoke(main, ["alerts", "deliveries", str(rule["id"]), "--json"], catch_exceptions=False)
        assert len(json.loads(shown.stdout)["deliveries"]) == 1
        # --json prints what HTTP answers: the same shapes, times in ISO-8601.
        with Trend(database_url=database_url, worker_enabled=False) as served, \
                TestClient(create_app(trend=served)) as client:
            assert json.loads(listed.stdout) == client.get("/v1/alerts").json()
            assert json.loads(shown.stdout) == client.get(f"/v1/alerts/{rule['id']}/deliveries").json()
        assert rule["created"].endswith("+00:00")
        removed = run.invoke(main, ["alerts", "remove", str(rule["id"]), "--json"], catch_exceptions=False)
        assert removed.exit_code == 0
        assert json.loads(removed.stdout) == {"id": rule["id"], "removed": True}
        again = run.invoke(main, ["alerts", "remove", str(rule["id"]), "--json"], catch_exceptions=False)
        assert again.exit_code == 2
        assert json.loads(again.stdout)["error"]["message"] == f"no alert rule {rule['id']}"
        assert receiver.bodies(rule["secret"])[0]["test"] is True


class TestBadRules:
    @pytest.mark.parametrize(("spec", "field"), [
        ({"condition": "sometimes"}, "condition"),
        ({"window": "7y"}, "window"),
        ({"by": "clicks"}, "by"),
        ({"cooldown": "99999999999999999999d"}, "cooldown"),
        ({"min_count": 10**30}, "min_count"),
        ({"event": "se\x00arch"}, "event"),
        ({"secret": "short"}, "secret"),
        ({"condition": "enters_top"}, "top"),
        ({"condition": "threshold", "key": "k"}, "threshold"),
    ])
    def test_a_bad_rule_names_its_field_and_stores_nothing(self, make_trend: TrendFactory, receiver: Receiver,
                                                           spec: dict[str, Any], field: str) -> None:
        trend = make_trend(**ALLOW)
        with pytest.raises(QueryError) as refused:
            trend.add_alert(**{"event": "search", "condition": "rising", "url": receiver.url, **spec})
        assert refused.value.parameter == field
        assert trend.alert_rules() == []


@pytest.mark.slow
class TestTwoWorkerProcesses:
    def test_two_trend_workers_deliver_each_firing_once(self, database_url: str, receiver: Receiver) -> None:
        """Two ``trend worker`` processes evaluate every second against one database: each minute's
        evaluation is claimed by one of them, so the surge fires once, with one delivery id."""
        now = int(time.time() * 1000)
        with Trend(database_url=database_url, worker_enabled=False, log_level="WARNING", clock=FakeClock(now),
                   **ALLOW) as seed:  # type: ignore[arg-type]
            _surge(seed, now)
            rule = _rising_rule(seed, receiver.url)
        env = environment(database_url, **EVERY_SECOND, TREND_JOBS__ALERTS__SECOND="*",
                          TREND_ALERT_WEBHOOK_ALLOW="127.0.0.1/32")
        workers = [Process([sys.executable, "-m", "trend", "worker"], env) for _ in range(2)]
        try:
            deadline = time.monotonic() + scaled(60)
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(4)  # more evaluations by both, which must find the minute claimed or the key cooling
        finally:
            errors = [worker.stop() for worker in workers]
        assert all("Traceback" not in error for error in errors), errors
        bodies = receiver.bodies(rule["secret"])
        assert [body["key"] for body in bodies] == ["surge"]
        with Trend(database_url=database_url, worker_enabled=False, log_level="WARNING") as check:
            deliveries = check.alert_deliveries(int(rule["id"])) or []
            with check.db.read() as tx:
                found = tx.exec_driver_sql("SELECT DISTINCT runner FROM job_runs WHERE job = 'alerts'")
                runners = {row[0] for row in found}
        assert [(d["id"], d["status"]) for d in deliveries] == [(bodies[0]["id"], "delivered")]
        assert len(runners) == 2  # both processes ran the job


class TestUnknownRules:
    def test_every_call_on_a_rule_that_does_not_exist_is_a_404(self, trend: Trend) -> None:
        with TestClient(create_app(trend=trend)) as client:
            for method, path in (("GET", "/v1/alerts/99/deliveries"), ("POST", "/v1/alerts/99/test"),
                                 ("DELETE", "/v1/alerts/99")):
                answer = client.request(method, path)
                assert answer.status_code == 404, path
                assert answer.json()["error"]["code"] == "unknown_alert"
