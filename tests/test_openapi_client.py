"""A client generated from trend's own /openapi.json by openapi-python-client calls every endpoint
of a live server and gets typed answers: the schema is complete and true."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receiver import Receiver
from tests.servers import Served

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(f"sqlite:///{tmp_path / 't.db'}", "--no-worker", TREND_ALERT_WEBHOOK_ALLOW="127.0.0.1")
    yield server
    server.stop()


def _generated_client(served: Served, folder: Path) -> Any:
    (folder / "openapi.json").write_text(httpx.get(f"{served.url}/openapi.json").text)
    (folder / "config.yml").write_text("post_hooks: []\n")
    result = subprocess.run([str(GENERATOR), "generate", "--path", "openapi.json", "--meta", "none",
                             "--config", "config.yml"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    return importlib.import_module("trend_client")


class TestGeneratedClient:
    def test_a_generated_client_calls_every_endpoint(self, served: Served, receiver: Receiver,
                                                     tmp_path: Path) -> None:
        trend_client = _generated_client(served, tmp_path)
        try:
            self._call_everything(served, receiver, tmp_path, trend_client)
        finally:
            sys.path.remove(str(tmp_path))
            for name in [n for n in sys.modules if n == "trend_client" or n.startswith("trend_client.")]:
                del sys.modules[name]

    @staticmethod
    def _call_everything(served: Served, receiver: Receiver, folder: Path, trend_client: Any) -> None:
        api = importlib.import_module("trend_client.api")
        models = importlib.import_module("trend_client.models")
        ops = {path.stem: importlib.import_module(f"trend_client.api.{path.parent.name}.{path.stem}")
               for path in (folder / "trend_client" / "api").glob("*/*.py") if path.stem != "__init__"}
        assert api is not None
        with trend_client.Client(base_url=served.url, raise_on_unexpected_status=True) as client:
            called = TestGeneratedClient._calls(client, ops, models, receiver)
        assert called == set(ops), set(ops) - called  # every operation of the schema was called

    @staticmethod
    def _calls(client: Any, ops: dict[str, Any], models: Any, receiver: Receiver) -> set[str]:
        called: set[str] = set()

        def call(name: str, **arguments: Any) -> Any:
            called.add(name)
            response = ops[name].sync_detailed(client=client, **arguments)
            assert 200 <= response.status_code < 300, (name, response.status_code, response.content)
            return response.parsed

        now = time.time()
        one = models.Event(event="search", key="우산", user_id="u1", ts=now - 120)
        assert call("post_events_v1_events_post", body=one).accepted == 1
        batch = models.EventBatch(events=[models.Event(event="search", key="boots", user_id=f"b{n}", ts=now - 90)
                                          for n in range(2)])
        assert call("post_events_v1_events_post", body=batch).accepted == 2
        assert call("post_events_v1_events_post", body=[models.Event(event="view", key="k")]).accepted == 1
        assert [(i.key, i.count) for i in call("top_v1_top_get", event="search").items] == [("boots", 2), ("우산", 1)]
        assert call("rising_v1_rising_get", event="search", min_count=1).by.value == "count"
        assert sum(p.count for p in call("series_v1_series_get", event="search").points) == 3
        assert {d.event for d in call("dimensions_v1_dimensions_get").events} == {"search", "view"}
        assert {j.job for j in call("jobs_v1_jobs_get").jobs} >= {"agg_1m", "agg_5m", "agg_1h", "retention"}
        assert call("run_job_v1_jobs_job_run_post", job="agg_1m").levels[0].level == "1m"
        assert call("healthz_healthz_get").database.value == "ok"
        assert call("livez_livez_get").status.value == "alive"
        assert call("readyz_readyz_get").status.value == "ready"
        assert "trend_events_total" in call("metrics_metrics_get")
        assert call("erase_user_v1_users_user_id_delete", user_id="u1").events == 1
        rising = models.AlertRuleInCondition("rising")
        rule = call("add_v1_alerts_post", body=models.AlertRuleIn(event="search", condition=rising, url=receiver.url))
        assert [r.id for r in call("rules_v1_alerts_get").rules] == [rule.id]
        assert call("test_v1_alerts_rule_id_test_post", rule_id=rule.id).status == "delivered"
        assert len(call("deliveries_v1_alerts_rule_id_deliveries_get", rule_id=rule.id).deliveries) == 1
        call("remove_v1_alerts_rule_id_delete", rule_id=rule.id)
        assert receiver.bodies(rule.secret)[0]["test"] is True
        return called
