"""A client generated from trend's own /openapi.json by openapi-python-client calls every endpoint
of a live server and gets typed answers: the schema is complete and true."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.deadlines import scaled
from tests.receiver import Receiver
from tests.servers import Hosted, Served, environment
from trend.api.app import create_app, mount
from trend.service import Trend

pytestmark = pytest.mark.slow  # real trend processes: make test, not make check

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


@contextmanager
def generated_client(schema: str, folder: Path, package: str) -> Iterator[Any]:
    """The package openapi-python-client makes from ``schema`` (the text of an /openapi.json), imported."""
    (folder / "openapi.json").write_text(schema)
    (folder / "config.yml").write_text("post_hooks: []\n")
    result = subprocess.run([str(GENERATOR), "generate", "--path", "openapi.json", "--meta", "none",
                             "--config", "config.yml"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(package)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
            del sys.modules[name]


class TestGeneratedClient:
    def test_a_generated_client_calls_every_endpoint(self, served: Served, receiver: Receiver,
                                                     tmp_path: Path) -> None:
        with generated_client(httpx.get(f"{served.url}/openapi.json").text, tmp_path, "trend_client") as trend_client:
            self._call_everything(served, receiver, tmp_path, trend_client)

    def test_an_app_that_embeds_trend_publishes_the_events_body(self, tmp_path: Path) -> None:
        """The host app's own /openapi.json defines Event and EventBatch, so its generated client has
        the events operation (it was skipped, its body referring to schemas nobody defined)."""
        host = Hosted(f"sqlite:///{tmp_path / 'shop.db'}")
        try:
            with generated_client(httpx.get(f"{host.url}/openapi.json").text, tmp_path, "shop_client") as shop_client:
                models = importlib.import_module("shop_client.models")
                ingest = importlib.import_module("shop_client.api.events.ingest_events")
                top = importlib.import_module("shop_client.api.trends.top")
                with shop_client.Client(base_url=host.url, raise_on_unexpected_status=True) as client:
                    batch = models.EventBatch(events=[models.Event(event="search", key="Boots", user_id=f"u{n}")
                                                      for n in range(3)])
                    assert ingest.sync(client=client, body=batch).accepted == 3
                    answer = top.sync(client=client, event="search")
                    assert [(item.key, item.count) for item in answer.items] == [("boots", 3)]
                    assert isinstance(answer.at, datetime)  # times are date-times in the schema
        finally:
            host.stop()

    def test_a_schema_dumped_without_starting_the_host_app_is_complete(self, tmp_path: Path) -> None:
        """As a build step does it: import the app, call app.openapi(), generate a client from that."""
        dump = "import json; from examples.embedded_app import app; print(json.dumps(app.openapi()))"
        ran = subprocess.run([sys.executable, "-c", dump], capture_output=True, text=True, timeout=scaled(60),
                             cwd=Path(__file__).resolve().parents[1],
                             env=environment(f"sqlite:///{tmp_path / 'shop.db'}"))
        assert ran.returncode == 0, ran.stderr
        schema = json.loads(ran.stdout)
        assert {"Event", "EventBatch"} <= set(schema["components"]["schemas"])
        with generated_client(ran.stdout, tmp_path, "shop_client"):
            models = importlib.import_module("shop_client.models")
            ingest = importlib.import_module("shop_client.api.events.ingest_events")
            body = models.EventBatch(events=[models.Event(event="search", key="k")]).to_dict()
            assert {name: body["events"][0][name] for name in ("event", "key")} == {"event": "search", "key": "k"}
            assert callable(ingest.sync)

    def test_include_router_completes_the_host_schema_when_the_app_starts(self, tmp_path: Path) -> None:
        with Trend(database_url=f"sqlite:///{tmp_path / 'h.db'}", worker_enabled=False) as trend:
            host = FastAPI(title="host")
            host.include_router(trend.router, prefix="/trend")
            with TestClient(host) as client:
                schema = client.get("/openapi.json").json()
            assert {"Event", "EventBatch"} <= set(schema["components"]["schemas"])
            assert "/trend/v1/events" in schema["paths"]
            mounted = FastAPI(title="mounted")
            mount(mounted, trend, prefix="/trend/")  # a trailing slash, as people type it
            assert "/trend/v1/events" in mounted.openapi()["paths"]

    def test_the_schema_reads_well_for_client_generators(self, served: Served) -> None:
        schema = httpx.get(f"{served.url}/openapi.json").json()
        operations = {op["operationId"]: op for path in schema["paths"].values() for op in path.values()}
        assert {"ingest_events", "top", "rising", "series", "add_alert", "healthz"} <= set(operations)
        assert schema["components"]["securitySchemes"]["TrendKey"] == {
            "type": "http", "scheme": "bearer", "description": ANY}
        # Keyless, every call may go without the key; the schema says so with {} ("or none").
        assert operations["top"]["security"] == [{"TrendKey": []}, {}]
        assert operations["ingest_events"]["security"] == [{"TrendKey": []}, {}]
        # Every 422 documented is the body trend really sends; FastAPI's own is never sent.
        invalid = [op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
                   for op in operations.values() if "422" in op["responses"]]
        assert set(invalid) == {"#/components/schemas/ErrorBody"}
        assert "HTTPValidationError" not in schema["components"]["schemas"]
        event = schema["components"]["schemas"]["Event"]["properties"]
        assert (event["key"]["maxLength"], event["segment"]["maxLength"]) == (256, 64)
        top = schema["components"]["schemas"]["Top"]["properties"]
        assert (top["at"]["type"], top["at"]["format"]) == ("string", "date-time")

    def test_the_schema_asks_for_the_key_where_this_server_does(self, tmp_path: Path) -> None:
        keyed = Trend(database_url=f"sqlite:///{tmp_path / 'k.db'}", worker_enabled=False, api_key="write-key-1")
        with keyed as trend, TestClient(create_app(trend=trend)) as client:
            schema = client.get("/openapi.json").json()
            operations = {op["operationId"]: op for path in schema["paths"].values() for op in path.values()}
            assert operations["ingest_events"]["security"] == [{"TrendKey": []}]  # writes need the key
            assert operations["top"]["security"] == [{"TrendKey": []}, {}]  # reads need none without a read key
            assert client.post("/v1/events", json={"event": "search", "key": "k"}).status_code == 401
            assert client.get("/v1/top", params={"event": "search"}).status_code == 200

    def test_the_real_422_body_is_the_documented_one(self, served: Served) -> None:
        answer = httpx.post(f"{served.url}/v1/events", json={"event": "search", "key": "k" * 257})
        assert answer.status_code == 422
        assert set(answer.json()) == {"error"}
        assert {"code", "message", "index", "field"} <= set(answer.json()["error"])
        assert answer.json()["error"]["field"] == "key"
        answer = httpx.delete(f"{served.url}/v1/alerts/0")
        assert answer.status_code == 422
        assert answer.json()["error"]["code"]

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
        assert call("ingest_events", body=one).accepted == 1
        batch = models.EventBatch(events=[models.Event(event="search", key="boots", user_id=f"b{n}", ts=now - 90)
                                          for n in range(2)])
        assert call("ingest_events", body=batch).accepted == 2
        assert call("ingest_events", body=[models.Event(event="view", key="k")]).accepted == 1
        assert [(i.key, i.count) for i in call("top", event="search").items] == [("boots", 2), ("우산", 1)]
        # Choices are plain strings, and times a datetime or the other forms as text.
        assert [i.key for i in call("top", event="search", window="1h", by="users").items] == ["boots", "우산"]
        ranged = call("series", event="search", interval="5m", start=datetime.fromtimestamp(now - 3600).astimezone(),
                      end="now")
        assert sum(p.count for p in ranged.points) == 3
        assert call("rising", event="search", min_count=1).by.value == "count"
        assert sum(p.count for p in call("series", event="search").points) == 3
        assert {d.event for d in call("dimensions").events} == {"search", "view"}
        assert {j.job for j in call("list_jobs").jobs} >= {"agg_1m", "agg_5m", "agg_1h", "retention"}
        assert call("run_job", job="agg_1m").levels[0].level == "1m"
        assert call("healthz").database.value == "ok"
        assert call("livez").status.value == "alive"
        assert call("readyz").status.value == "ready"
        assert "trend_events_total" in call("metrics")
        assert call("erase_user", user_id="u1").events == 1
        assert call("erase_user_by_query", user_id="team/b0").events == 0
        rising = models.AlertRuleInCondition("rising")
        rule = call("add_alert", body=models.AlertRuleIn(event="search", condition=rising, url=receiver.url))
        assert [r.id for r in call("list_alerts").rules] == [rule.id]
        assert call("test_alert", rule_id=rule.id).status == "delivered"
        assert len(call("alert_deliveries", rule_id=rule.id).deliveries) == 1
        call("remove_alert", rule_id=rule.id)
        assert receiver.bodies(rule.secret)[0]["test"] is True
        return called
