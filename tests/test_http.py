"""POST /v1/events and /healthz through the real FastAPI app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import T0, TrendFactory
from tests.reference import stored_events
from tests.test_ingest import GOOD, INVALID
from trend.api.app import create_app
from trend.service import Trend

# NaN and Infinity are not JSON; test_malformed_bodies_get_422_and_store_nothing sends them raw.
JSON_INVALID = [(p, f) for p, f in INVALID if not any(v != v or v == float("inf") for v in p.values())]


@pytest.fixture
def client(trend: Trend) -> Iterator[TestClient]:
    with TestClient(create_app(trend=trend)) as test_client:
        yield test_client


class TestPostEvents:
    @pytest.mark.parametrize("body", [GOOD, [GOOD, GOOD], {"events": [GOOD, GOOD]}])
    def test_one_event_an_array_or_an_envelope(self, client: TestClient, trend: Trend, body: Any) -> None:
        response = client.post("/v1/events", json=body)
        expected = 1 if body is GOOD else 2
        assert response.status_code == 202
        assert response.json() == {"accepted": expected, "duplicates": 0}
        assert len(stored_events(trend)) == expected

    def test_duplicates_are_counted(self, client: TestClient) -> None:
        body = [{**GOOD, "event_id": "a"}, {**GOOD, "event_id": "a"}]
        assert client.post("/v1/events", json=body).json() == {"accepted": 1, "duplicates": 1}
        assert client.post("/v1/events", json=body).json() == {"accepted": 0, "duplicates": 2}

    @pytest.mark.parametrize(("payload", "field"), JSON_INVALID)
    def test_a_bad_event_rejects_the_batch_with_422(self, client: TestClient, trend: Trend,
                                                     payload: dict[str, Any], field: str) -> None:
        response = client.post("/v1/events", json=[GOOD, payload])
        assert response.status_code == 422
        error = response.json()["error"]
        assert (error["code"], error["index"], error["field"]) == ("invalid_event", 1, field)
        assert error["message"]
        assert stored_events(trend) == []

    @pytest.mark.parametrize("raw", [
        b'[{"event": "search", "key": "k", "value": NaN}]',
        b'[{"event": "search", "key": "k", "value": Infinity}]',
        b'{"event": "search", "key": "a", "key": "b"}',
        b'{"event": "search", "key": ',
        b'\xff\xfe',
        b'"just a string"',
        b'{"events": 5}',
    ])
    def test_malformed_bodies_get_422_and_store_nothing(self, client: TestClient, trend: Trend, raw: bytes) -> None:
        response = client.post("/v1/events", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] in {"invalid_json", "invalid_body"}
        assert stored_events(trend) == []

    def test_a_body_over_the_limit_gets_413(self, make_trend: TrendFactory) -> None:
        trend = make_trend(max_body_bytes=2048)
        with TestClient(create_app(trend=trend)) as client:
            response = client.post("/v1/events", json=[GOOD] * 100)
        assert response.status_code == 413
        assert "2048" in response.json()["error"]["message"]
        assert stored_events(trend) == []

    def test_too_many_events_in_one_batch_get_413(self, make_trend: TrendFactory) -> None:
        trend = make_trend(max_batch_events=3)
        with TestClient(create_app(trend=trend)) as client:
            assert client.post("/v1/events", json=[GOOD] * 3).status_code == 202
            assert client.post("/v1/events", json=[GOOD] * 4).status_code == 413

    def test_a_wrong_content_type_gets_415(self, client: TestClient) -> None:
        response = client.post("/v1/events", content=json.dumps(GOOD), headers={"content-type": "text/plain"})
        assert response.status_code == 415


class TestWriteKey:
    @pytest.fixture
    def keyed(self, make_trend: TrendFactory) -> Iterator[TestClient]:
        with TestClient(create_app(trend=make_trend(api_key="s3cret"))) as client:
            yield client

    @pytest.mark.parametrize(("header", "status"), [
        (None, 401), ("Bearer wrong", 403), ("Basic s3cret", 401), ("Bearer s3cret", 202)])
    def test_writes_need_the_key(self, keyed: TestClient, header: str | None, status: int) -> None:
        headers = {"Authorization": header} if header else {}
        response = keyed.post("/v1/events", json=GOOD, headers=headers)
        assert response.status_code == status
        assert "s3cret" not in response.text


class TestMethodNotAllowed:
    @pytest.mark.parametrize(("method", "path", "allowed"), [
        ("DELETE", "/v1/top", "GET, HEAD"), ("PUT", "/v1/events", "POST"), ("PATCH", "/v1/alerts/1", "DELETE"),
        ("POST", "/livez", "GET, HEAD"), ("PUT", "/v1/alerts", "GET, POST"),
    ])
    def test_a_405_names_every_method_the_path_takes(self, client: TestClient, method: str, path: str,
                                                     allowed: str) -> None:
        """/v1/alerts has two routes (GET and POST): both are named, not only the first one's."""
        response = client.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed


class TestHealth:
    def test_reports_database_worker_and_lag(self, client: TestClient, trend: Trend) -> None:
        trend.ingest([{**GOOD, "ts": (T0 - 10 * 60_000) / 1000}])
        body = client.get("/healthz").json()
        assert body["database"] == "ok"
        assert body["worker"] == {"enabled": False, "running": False}
        # The minute 06:41 closed at 06:42:05; it is now 06:51:00.
        assert body["lag_seconds"] == 535.0

    def test_liveness_stays_200_while_the_database_is_down_and_readiness_says_so(self) -> None:
        """A PostgreSQL nobody listens on: the process is alive, not ready, and /healthz says why."""
        trend = Trend(database_url="postgresql://postgres@127.0.0.1:1/none", worker_enabled=False,
                      log_level="ERROR")
        try:
            # Not entered: the lifespan would create the schema first, and fail at start-up.
            down = TestClient(create_app(trend=trend))
            for method in ("GET", "HEAD"):
                assert down.request(method, "/livez").status_code == 200
                assert down.request(method, "/readyz").status_code == 503
                assert down.request(method, "/healthz").status_code == 503
            assert down.get("/livez").json() == {"status": "alive"}
            assert down.get("/readyz").json() == {"status": "unavailable"}
        finally:
            trend.close()

    def test_readiness_is_200_when_the_database_answers(self, client: TestClient) -> None:
        for method in ("GET", "HEAD"):
            assert client.request(method, "/readyz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ready"}

    def test_the_lifespan_starts_and_stops_the_worker(self, make_trend: TrendFactory) -> None:
        trend = make_trend(worker_enabled=True)
        with TestClient(create_app(trend=trend)) as client:
            assert client.get("/healthz").json()["worker"] == {"enabled": True, "running": True}
        assert not trend.worker.running
