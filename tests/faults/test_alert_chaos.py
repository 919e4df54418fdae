"""Alerts under chaos (docs/reliability.md, "Alerts under chaos"): 50 rules on one database, two
``trend worker`` processes, real local receivers that answer well, drip one byte a second, answer
500, refuse connections or redirect; rules deleted and made again while it runs. Every good rule's
firing reaches its receiver within 2 minutes, exactly once by delivery id, signed with its own secret."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import PROTOCOL_BACKENDS
from tests.deadlines import scaled
from tests.receiver import Receiver
from tests.servers import EVERY_SECOND, Process, environment, free_port
from tests.test_alert_isolation import _Dripping
from trend.service import Trend

pytestmark = [pytest.mark.faults, pytest.mark.slow,
              pytest.mark.parametrize("backend", PROTOCOL_BACKENDS, indirect=True)]

ENV = {**EVERY_SECOND, "TREND_JOBS__ALERTS__SECOND": "*", "TREND_ALERT_WEBHOOK_ALLOW": "127.0.0.1/32",
       "TREND_ALERT_TIMEOUT_SECONDS": "2", "TREND_ALERT_RETRY_BASE": "1s", "TREND_ALERT_MAX_ATTEMPTS": "3"}
SETTINGS: dict[str, Any] = {"alert_webhook_allow": ["127.0.0.1/32"], "log_level": "WARNING"}
DEADLINE_S = scaled(120)  # a good firing's delivery, at the latest


class _Redirecting:
    """Answers every delivery with 307 to ``target``: trend follows no redirect, so nothing reaches it."""

    def __init__(self, target: str) -> None:
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.hits += 1
                self.send_response(307)
                self.send_header("Location", target)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def good() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def _wait(condition: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``condition`` held; fails after ``seconds``."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, "timed out"
        time.sleep(0.2)
    return time.monotonic() - began


def _rule_ids(receiver: Receiver) -> list[int]:
    return [int(json.loads(request["body"])["rule"]["id"]) for request in receiver.received]


class TestAlertChaos:
    def test_fifty_rules_bad_receivers_churn_and_two_workers(self, database_url: str, backend: str,
                                                             good: Receiver) -> None:
        dripping, erroring = _Dripping(every=1.0), Receiver()
        erroring.answers = [500] * 10_000
        redirecting = _Redirecting(good.url)
        refused = f"http://127.0.0.1:{free_port()}/hook"
        now = time.time()
        with Trend(database_url=database_url, worker_enabled=False, **SETTINGS) as trend:
            # 36 keys above their rule's threshold: a threshold rule fires on its first evaluation.
            trend.ingest([{"event": "search", "key": f"k{n}", "ts": now - 60} for n in range(36) for _ in range(5)])

            def rule(n: int, url: str, event: str = "search") -> dict[str, Any]:
                return trend.add_alert(event=event, condition="threshold", key=f"k{n}", threshold=3, window="15m",
                                       url=url, cooldown="1d")

            rules = {"good": [rule(n, good.url) for n in range(20)],
                     "unseen": [rule(n, good.url, event="signup") for n in range(8)],
                     "dripping": [rule(20 + n, dripping.url) for n in range(6)],
                     "erroring": [rule(26 + n, erroring.url) for n in range(6)],
                     "refused": [rule(32 + n, refused) for n in range(4)],
                     "redirecting": [rule(n, redirecting.url) for n in range(6)]}
            assert sum(len(group) for group in rules.values()) == 50
        secrets = {int(r["id"]): str(r["secret"]) for group in rules.values() for r in group}
        env = environment(database_url, **ENV)
        workers = [Process([sys.executable, "-m", "trend", "worker"], env) for _ in range(2)]
        began = time.monotonic()
        try:
            first = {int(r["id"]) for r in rules["good"]}
            first_round_s = _wait(lambda: first <= set(_rule_ids(good)), DEADLINE_S)
            # Churn: five good rules and three whose receiver fails are deleted and made again, the
            # latter now pointing at the good receiver; their new ids and secrets must be the ones used.
            removed_at: dict[int, float] = {}
            with Trend(database_url=database_url, worker_enabled=False, **SETTINGS) as trend:
                remade = []
                for old, key in [*((r, int(r["key"][1:])) for r in rules["good"][:5]),
                                 *((r, int(r["key"][1:])) for r in rules["erroring"][:3])]:
                    assert trend.remove_alert(int(old["id"]))
                    removed_at[int(old["id"])] = time.time()
                    remade.append(trend.add_alert(event="search", condition="threshold", key=f"k{key}", threshold=3,
                                                  window="15m", url=good.url, cooldown="1d"))
            second = {int(r["id"]) for r in remade}
            assert min(second) > max(secrets)  # ids are never reused
            secrets |= {int(r["id"]): str(r["secret"]) for r in remade}
            second_round_s = _wait(lambda: second <= set(_rule_ids(good)), DEADLINE_S)
            time.sleep(3)  # more evaluations and sends by both workers: none may repeat a delivery
        finally:
            errors = [worker.stop(60) for worker in workers]
            for server in (dripping, erroring, redirecting):
                server.close()
        total_s = time.monotonic() - began
        assert all("Traceback" not in error for error in errors), errors

        # Every delivery the good receiver got: signed with its own rule's secret, once per id.
        ids, latencies = [], []
        for request in good.received:
            body = json.loads(request["body"])
            Webhook(secrets[int(body["rule"]["id"])]).verify(request["body"], request["headers"])
            ids.append(request["headers"]["webhook-id"])
            latencies.append(request["at"] - datetime.fromisoformat(body["fired_at"]).timestamp())
        assert len(ids) == len(set(ids))  # exactly once by id
        expected = {int(r["id"]) for r in rules["good"]} | second
        assert sorted(_rule_ids(good)) == sorted(expected)  # each good firing once; nothing redirected here
        assert max(latencies) < DEADLINE_S
        # A deleted rule's pending retries are cancelled: after a send already in flight (one timeout),
        # its receiver hears nothing more of it.
        late = [rule_id for request in erroring.received
                if (rule_id := int(json.loads(request["body"])["rule"]["id"])) in removed_at
                and request["at"] > removed_at[rule_id] + 2.5]
        assert late == []

        with Trend(database_url=database_url, worker_enabled=False, **SETTINGS) as trend:
            by_id = {int(r["id"]): r for r in trend.alert_rules()}
            bad = [int(r["id"]) for kind in ("dripping", "erroring", "refused", "redirecting") for r in rules[kind]
                   if int(r["id"]) in by_id]
            outcomes = {rule_id: (trend.alert_deliveries(rule_id) or []) for rule_id in bad}
            unseen = {int(r["id"]): trend.alert_deliveries(int(r["id"])) for r in rules["unseen"]}
            with trend.db.read() as tx:
                runners = {row[0] for row in tx.exec_driver_sql(
                    "SELECT DISTINCT runner FROM job_runs WHERE job = 'alerts'")}
        assert all(len(found) == 1 and found[0]["status"] in ("pending", "failed") and found[0]["attempts"] >= 1
                   and found[0]["last_error"] for found in outcomes.values()), outcomes
        assert all(found == [] for found in unseen.values())  # an event not stored yet: evaluates as empty
        assert all(by_id[rule_id]["last_error"] is None for rule_id in unseen)
        assert redirecting.hits >= 1  # the redirect was met, and not followed
        assert len(runners) == 2  # both processes ran the job
        attempts = sum(found[0]["attempts"] for found in outcomes.values())
        print(f"\nalert chaos on {backend}: 28 good firings, first 20 delivered in "
              f"{first_round_s:.1f} s, the 8 remade rules' in {second_round_s:.1f} s; latest delivery "
              f"{max(latencies):.1f} s after its firing; {attempts} attempts on {len(bad)} failing receivers; "
              f"{len(ids)} deliveries, {len(set(ids))} ids; {total_s:.0f} s in all")
