"""GET /v1/series, /v1/top, /v1/rising, /v1/jobs, /metrics and POST /v1/jobs/{job}/run over HTTP."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import T0, TrendFactory
from trend.api.app import create_app
from trend.clock import FakeClock
from trend.model import LEVELS, MINUTE_MS
from trend.service import Trend


@pytest.fixture
def client(trend: Trend) -> Iterator[TestClient]:
    # 우산 by two people (one of them twice); coat by nobody known.
    trend.ingest([{"event": "search", "key": "우산", "ts": (T0 - m * MINUTE_MS) / 1000, "user_id": f"u{m % 2}"}
                  for m in range(3)])
    trend.ingest([{"event": "search", "key": "coat", "ts": (T0 - m * MINUTE_MS) / 1000} for m in range(2)])
    with TestClient(create_app(trend=trend)) as test_client:
        yield test_client


class TestShapes:
    def test_top(self, client: TestClient) -> None:
        body = client.get("/v1/top", params={"event": "search", "window": "15m"}).json()
        assert body["window"] == "15m"
        assert body["at"] == "2025-11-13T06:51:00+00:00"
        assert body["by"] == "count"
        assert body["items"] == [
            {"rank": 1, "key": "우산", "count": 3, "users": 2, "prev_rank": None, "rank_change": None, "is_new": True},
            {"rank": 2, "key": "coat", "count": 2, "users": 0, "prev_rank": None, "rank_change": None,
             "is_new": True}]

    def test_top_by_users(self, client: TestClient) -> None:
        """Ranked by users, a key nobody known sent is not listed."""
        body = client.get("/v1/top", params={"event": "search", "window": "15m", "by": "users"}).json()
        assert body["by"] == "users"
        assert [(i["key"], i["count"], i["users"]) for i in body["items"]] == [("우산", 3, 2)]

    def test_series(self, client: TestClient) -> None:
        body = client.get("/v1/series", params={"event": "search", "key": "우산", "interval": "1m",
                                                "start": "2025-11-13T06:48:00Z", "end": "2025-11-13T06:51:30Z"}).json()
        assert (body["interval"], body["start"], body["end"]) == (
            "1m", "2025-11-13T06:48:00+00:00", "2025-11-13T06:52:00+00:00")
        assert [(p["t"][11:16], p["count"], p["users"], p["sum"], p["min"]) for p in body["points"]] == [
            ("06:48", 0, 0, 0, None), ("06:49", 1, 1, 1.0, 1.0), ("06:50", 1, 1, 1.0, 1.0), ("06:51", 1, 1, 1.0, 1.0)]

    def test_relative_times_as_on_the_command_line(self, client: TestClient) -> None:
        """now-2h in a query string is the injected clock's now minus two hours, as in ``trend series``."""
        relative = client.get("/v1/series", params={"event": "search", "interval": "1m", "start": "now-4m",
                                                    "end": "now"}).json()
        absolute = client.get("/v1/series", params={
            "event": "search", "interval": "1m", "start": "2025-11-13T06:47:00Z", "end": "2025-11-13T06:51:00Z"}).json()
        assert relative == absolute
        assert [p["count"] for p in relative["points"]] == [0, 0, 1, 2]  # 06:47 to 06:50
        at = client.get("/v1/top", params={"event": "search", "window": "5m", "at": "now-10m"}).json()
        assert at["at"] == "2025-11-13T06:41:00+00:00"
        refused = client.get("/v1/top", params={"event": "search", "at": "now-2x"})
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "at"

    def test_rising(self, client: TestClient) -> None:
        """Two keys with no history: breakouts, whose growth is not a number. By z-score, as earlier
        releases: z = c; by the default score, the deviance of Binomial(c, 1/13) at c (no other key has
        a history, so each is compared with its own baseline's 12 windows): √(2·c·ln 13)."""
        params: dict[str, str | int] = {"event": "search", "window": "5m", "min_count": 2}
        body = client.get("/v1/rising", params=params).json()
        got = [(i["rank"], i["key"], i["count"], i["baseline"], i["growth_pct"], i["breakout"]) for i in body["items"]]
        assert got == [(1, "우산", 3, 0.0, None, True), (2, "coat", 2, 0.0, None, True)]
        assert [i["score"] for i in body["items"]] == pytest.approx([math.sqrt(2 * c * math.log(13)) for c in (3, 2)])
        by_z = client.get("/v1/rising", params={**params, "score": "zscore"}).json()
        assert [(i["key"], i["score"]) for i in by_z["items"]] == [("우산", 3.0), ("coat", 2.0)]

    def test_display_zone(self, make_trend: TrendFactory) -> None:
        trend = make_trend(timezone="Asia/Seoul")
        with TestClient(create_app(trend=trend)) as client:
            body = client.get("/v1/series", params={"event": "search", "interval": "1h"}).json()
        assert body["end"] == "2025-11-13T16:00:00+09:00"

    def test_dimensions(self, client: TestClient) -> None:
        found = client.get("/v1/dimensions").json()
        assert found["events"] == [{"event": "search", "segments": [""]}]
        assert found["intervals"] == LEVELS.names
        # What the dashboard needs to draw a whole window: a day of minutes, a week of 5m, 90 days of hours.
        assert found["interval_limits"][:3] == [{"interval": "1m", "seconds": 60, "max_points": 1440},
                                                {"interval": "5m", "seconds": 300, "max_points": 2016},
                                                {"interval": "1h", "seconds": 3600, "max_points": 2160}]
        assert found["rankings"] == ["count", "users"]  # the dashboard's "by" choices


class TestJobs:
    def test_jobs_list_and_run(self, client: TestClient, clock: FakeClock) -> None:
        jobs = {j["job"]: j for j in client.get("/v1/jobs").json()["jobs"]}
        assert set(jobs) == {*(level.job for level in LEVELS), "retention", "alerts"}
        assert jobs["agg_1m"]["schedule"] == "hour=* minute=* second=5 UTC"
        assert jobs["alerts"]["schedule"] == "hour=* minute=* second=10 UTC"  # after the 1m job's minute
        assert jobs["agg_1m"]["backlog"] == 1  # closed buckets only: 06:50 and 06:51 are still open
        assert jobs["agg_1m"]["last_run"] is None
        clock.advance(5_000)
        ran = client.post("/v1/jobs/agg_1m/run").json()
        assert ran["levels"][0]["outcome"] == "ran"
        assert ran["levels"][0]["buckets"] == 2  # 06:49 and 06:50; 06:51 is still open
        jobs = {j["job"]: j for j in client.get("/v1/jobs").json()["jobs"]}
        assert jobs["agg_1m"]["backlog"] == 0  # 06:51 is dirty but open: not late, still filling
        assert jobs["agg_1m"]["last_run"]["outcome"] == "ran"

    def test_an_unknown_job_is_404(self, client: TestClient) -> None:
        response = client.post("/v1/jobs/agg_2m/run")
        assert response.status_code == 404
        assert "agg_1m" in response.json()["error"]["message"]

    def test_metrics(self, client: TestClient, clock: FakeClock) -> None:
        clock.advance(5_000)
        client.post("/v1/events", json={"event": "search", "key": "x", "event_id": "1"})
        client.post("/v1/events", json={"event": "search", "key": "x", "event_id": "1"})
        client.post("/v1/jobs/agg_1m/run")
        text = client.get("/metrics").text
        assert 'trend_events_total{result="accepted"} 6.0' in text  # five from the fixture, one over HTTP
        assert 'trend_events_total{result="duplicate"} 1.0' in text
        assert 'trend_job_runs_total{outcome="ran",trend_job="agg_1m"} 1.0' in text
        assert 'trend_backlog_buckets{level="1m"} 0.0' in text  # the open minute sent over HTTP is not late
        assert 'trend_job_run_seconds_count{trend_job="agg_1m"} 1.0' in text


PROTECTED_WRITES = [("POST", "/v1/events", {"event": "search", "key": "k"}), ("POST", "/v1/jobs/agg_1m/run", None)]
READS = [("GET", "/v1/top?event=search", None), ("GET", "/v1/series?event=search", None),
         ("GET", "/v1/rising?event=search", None), ("GET", "/v1/jobs", None), ("GET", "/metrics", None),
         ("GET", "/v1/dimensions", None)]


class TestAuth:
    @pytest.fixture
    def keyed(self, make_trend: TrendFactory) -> Iterator[TestClient]:
        with TestClient(create_app(trend=make_trend(api_key="w-key", read_key="r-key"))) as client:
            yield client

    @pytest.mark.parametrize(("method", "path", "body"), PROTECTED_WRITES)
    @pytest.mark.parametrize(("token", "status"), [(None, 401), ("nope", 403), ("r-key", 403), ("w-key", None)])
    def test_writes_and_admin(self, keyed: TestClient, method: str, path: str, body: object, token: str | None,
                              status: int | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = keyed.request(method, path, json=body, headers=headers)
        if status is None:
            assert response.status_code in (200, 202)
        else:
            assert response.status_code == status
            assert response.json()["error"]["code"] in ("unauthorized", "forbidden")
            assert "w-key" not in response.text

    @pytest.mark.parametrize(("method", "path", "body"), READS)
    @pytest.mark.parametrize(("token", "status"), [(None, 401), ("nope", 403), ("r-key", 200), ("w-key", 200)])
    def test_reads_with_a_read_key(self, keyed: TestClient, method: str, path: str, body: object, token: str | None,
                                   status: int) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert keyed.request(method, path, headers=headers).status_code == status

    @pytest.mark.parametrize(("method", "path", "body"), READS)
    def test_reads_are_open_without_a_read_key(self, make_trend: TrendFactory, method: str, path: str,
                                               body: object) -> None:
        with TestClient(create_app(trend=make_trend(api_key="w-key"))) as client:
            assert client.request(method, path).status_code == 200

    def test_health_is_always_open(self, keyed: TestClient) -> None:
        assert keyed.get("/healthz").status_code == 200


class TestValidation:
    @pytest.mark.parametrize(("path", "field", "allowed"), [
        ("/v1/series?event=search&interval=2m", "interval", "1m"),
        ("/v1/top?event=search&window=2h", "window", "15m"),
        ("/v1/rising?event=search&window=1d", "window", "24h"),
        ("/v1/top?event=nosuch", "event", "known events: search"),
        ("/v1/top", "event", "required"),
        ("/v1/series?event=search&start=2025-11-13T06:00:00Z&end=2025-11-13T05:00:00Z", "end", "after start"),
        ("/v1/series?event=search&interval=1m&start=2025-11-01T00:00:00Z", "start", "at most 1440 points"),
        ("/v1/top?event=search&limit=0", "limit", "greater than or equal to 1"),
        ("/v1/top?event=search&limit=101", "limit", "less than or equal to 100"),
        ("/v1/rising?event=search&baseline=0", "baseline", "greater than or equal to 1"),
        ("/v1/rising?event=search&min_count=x", "min_count", "integer"),
        ("/v1/top?event=search&at=yesterday", "at", "ISO-8601"),
        ("/v1/series?event=search&start=2025-11-13T06:00:00", "start", "zone"),
    ])
    def test_bad_parameters_get_422_saying_what_is_allowed(self, client: TestClient, path: str, field: str,
                                                           allowed: str) -> None:
        response = client.get(path)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == field
        assert allowed in error["message"]

    def test_openapi_docs_are_served(self, client: TestClient) -> None:
        assert client.get("/docs").status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/events", "/v1/top", "/v1/rising", "/v1/series", "/v1/jobs", "/healthz"} <= set(paths)
