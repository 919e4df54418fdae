"""The embedding example runs: an existing app mounts trend's router and runs its worker."""

from __future__ import annotations

import importlib
import sys

import pytest
from fastapi.testclient import TestClient


class TestEmbeddedExample:
    def test_the_example_app_records_searches_and_serves_trend_under_a_prefix(
        self, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        sys.modules.pop("examples.embedded_app", None)
        example = importlib.import_module("examples.embedded_app")
        try:
            with TestClient(example.app) as client:
                assert example.trend.worker.running  # the lifespan started the worker
                for query in ["우산", "우산", "boots"]:
                    response = client.get("/search", params={"q": query})
                    assert response.status_code == 200
                assert response.json()["popular"] == ["우산", "boots"]
                top = client.get("/trend/v1/top", params={"event": "search", "window": "5m"}).json()
                assert [(i["key"], i["count"]) for i in top["items"]] == [("우산", 2), ("boots", 1)]
                sent = client.post("/trend/v1/events", json={"event": "search", "key": "coat"})
                assert sent.status_code == 202
                assert client.get("/trend/healthz").json()["worker"]["running"] is True
            assert not example.trend.worker.running  # and stopped it on shutdown
        finally:
            example.trend.close()
            sys.modules.pop("examples.embedded_app", None)


class TestLifespanHelper:
    def test_trend_lifespan_runs_the_worker_with_any_app(self, database_url: str) -> None:
        from fastapi import FastAPI

        from trend import Trend

        trend = Trend(database_url=database_url)
        app = FastAPI(lifespan=trend.lifespan)
        app.include_router(trend.router, prefix="/trend")
        try:
            with TestClient(app) as client:
                assert trend.worker.running
                assert client.post("/trend/v1/events", json={"event": "search", "key": "k"}).status_code == 202
                assert client.get("/trend/v1/top", params={"event": "search"}).json()["items"][0]["key"] == "k"
            assert not trend.worker.running
        finally:
            trend.close()


class TestMountedRouterErrors:
    def test_a_mounted_router_answers_refusals_with_its_documented_body(
            self, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
        """An app that only includes ``trend.router`` (no create_app, no handlers of trend's) still gets
        the error contract: 4xx with ``{"error": …}``, never a 500 or FastAPI's ``{"detail": …}``."""
        from fastapi import FastAPI

        from trend.service import Trend

        trend = Trend(database_url=database_url, worker_enabled=False)
        app = FastAPI()
        app.include_router(trend.router, prefix="/trend")
        try:
            with TestClient(app, raise_server_exceptions=False) as client:
                client.post("/trend/v1/events", json={"event": "search", "key": "k"})
                refusals = {
                    "invalid event": client.post("/trend/v1/events", json={"event": "search"}),
                    "unknown event": client.get("/trend/v1/top", params={"event": "serch"}),
                    "text/plain body": client.post("/trend/v1/events", content=b"event=search",
                                                   headers={"content-type": "text/plain"}),
                    "bad window": client.get("/trend/v1/top", params={"event": "search", "window": "7y"}),
                }
            for name, response in refusals.items():
                assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
                body = response.json()
                assert set(body) == {"error"}, (name, body)
                assert body["error"]["code"], (name, body)
                assert body["error"]["message"], (name, body)
            assert refusals["text/plain body"].status_code == 415
            assert refusals["bad window"].json()["error"]["field"] == "window"
            assert "Traceback" not in caplog.text
        finally:
            trend.close()
