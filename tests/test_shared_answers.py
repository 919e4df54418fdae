"""Hot reads over HTTP: identical requests share one answer (docs/queries.md, "Shared answers"), a
client that holds the current answer gets 304, and large answers go out gzipped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import T0, TrendFactory
from tests.servers import Served
from trend.api.answers import STAMP_MS, SharedAnswers
from trend.api.app import create_app, mount
from trend.clock import FakeClock
from trend.model import MINUTE_MS
from trend.service import Trend

TOP = {"event": "search", "window": "1h", "limit": "100"}


def _events(keys: int, ts_ms: int, count: int = 1) -> list[dict[str, Any]]:
    return [{"event": "search", "key": f"key-{n:04d}", "ts": ts_ms / 1000} for n in range(keys) for _ in range(count)]


@pytest.fixture
def served_trend(make_trend: TrendFactory) -> Trend:
    trend = make_trend()
    trend.ingest(_events(5, T0 - 5 * MINUTE_MS))
    return trend


@pytest.fixture
def client(served_trend: Trend) -> Iterator[TestClient]:
    with TestClient(create_app(trend=served_trend)) as test_client:
        yield test_client


class TestConditionalGet:
    def test_the_current_etag_gets_304_until_the_data_or_the_minute_changes(
            self, client: TestClient, served_trend: Trend, make_trend: TrendFactory, clock: FakeClock) -> None:
        first = client.get("/v1/top", params=TOP)
        assert first.status_code == 200
        tag = first.headers["etag"]
        assert tag.startswith('W/"')
        assert first.headers["cache-control"] == "public, max-age=0"
        again = client.get("/v1/top", params=TOP, headers={"If-None-Match": tag})
        assert (again.status_code, again.content) == (304, b"")
        assert again.headers["etag"] == tag
        # Stored by this process: the next read sees it at once.
        served_trend.ingest(_events(1, T0 - 5 * MINUTE_MS))
        changed = client.get("/v1/top", params=TOP, headers={"If-None-Match": tag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != tag
        assert changed.json()["items"][0] == {**changed.json()["items"][0], "key": "key-0000", "count": 2}
        # Stored by another process: seen once the change stamp is read again, within STAMP_MS.
        tag = changed.headers["etag"]
        make_trend().ingest(_events(1, T0 - 5 * MINUTE_MS))
        time.sleep(2 * STAMP_MS / 1000)
        assert client.get("/v1/top", params=TOP, headers={"If-None-Match": tag}).status_code == 200
        # The window moves with the minute: a new minute is a new answer.
        tag = client.get("/v1/top", params=TOP).headers["etag"]
        clock.advance(MINUTE_MS)
        assert client.get("/v1/top", params=TOP, headers={"If-None-Match": tag}).status_code == 200

    def test_head_and_if_none_match_star_answer_as_http_says(self, client: TestClient) -> None:
        """HEAD: GET's status and headers, no body (a cache or monitor checking the ETag). ``*`` in
        If-None-Match holds any current answer, so a GET gets 304 (RFC 9110, 13.1.2)."""
        for path, params in (("/v1/top", TOP), ("/v1/series", {"event": "search"}),
                             ("/v1/rising", {"event": "search", "min_count": "1"})):
            got = client.get(path, params=params)
            head = client.head(path, params=params)
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["etag"] == got.headers["etag"]
            assert head.headers["content-length"] == got.headers["content-length"]
            assert client.get(path, params=params, headers={"If-None-Match": "*"}).status_code == 304
        assert client.head("/v1/top", params={**TOP, "limit": "0"}).status_code == 422
        assert "head" not in client.get("/openapi.json").json()["paths"]["/v1/top"]

    def test_other_parameters_are_other_answers(self, client: TestClient) -> None:
        tag = client.get("/v1/top", params=TOP).headers["etag"]
        other = client.get("/v1/top", params={**TOP, "limit": "5"}, headers={"If-None-Match": tag})
        assert other.status_code == 200
        assert len(other.json()["items"]) == 5
        series = client.get("/v1/series", params={"event": "search"})
        assert series.status_code == 200
        assert client.get("/v1/series", params={"event": "search"},
                          headers={"If-None-Match": series.headers["etag"]}).status_code == 304
        rising = client.get("/v1/rising", params={"event": "search", "min_count": "1"})
        assert client.get("/v1/rising", params={"event": "search", "min_count": "1"},
                          headers={"If-None-Match": rising.headers["etag"]}).status_code == 304


class TestCacheControl:
    def test_max_age_is_a_setting_and_keyed_reads_are_private(self, make_trend: TrendFactory) -> None:
        """TREND_HTTP_MAX_AGE lets a CDN or a proxy keep answers; never shared ones that need a read key."""
        trend = make_trend(http_max_age=30, read_key="reader-key-0123456789")
        trend.ingest(_events(1, T0 - 5 * MINUTE_MS))
        with TestClient(create_app(trend=trend)) as keyed:
            response = keyed.get("/v1/top", params=TOP, headers={"Authorization": "Bearer reader-key-0123456789"})
        assert response.headers["cache-control"] == "private, max-age=30"
        trend = make_trend(http_max_age=30)
        trend.ingest(_events(1, T0 - 5 * MINUTE_MS))
        with TestClient(create_app(trend=trend)) as open_client:
            assert open_client.get("/v1/top", params=TOP).headers["cache-control"] == "public, max-age=30"


class TestGzip:
    def test_a_large_answer_is_gzipped_for_clients_that_accept_it(self, make_trend: TrendFactory) -> None:
        trend = make_trend()
        trend.ingest(_events(100, T0 - 5 * MINUTE_MS))
        with TestClient(create_app(trend=trend)) as client:
            zipped = client.get("/v1/top", params=TOP, headers={"Accept-Encoding": "gzip"})
            plain = client.get("/v1/top", params=TOP, headers={"Accept-Encoding": "identity"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert int(zipped.headers["content-length"]) < len(plain.content) / 3
        assert "content-encoding" not in plain.headers
        assert zipped.json() == plain.json()  # httpx decodes it
        assert len(plain.json()["items"]) == 100


@pytest.fixture
def hot_answers(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each read was answered before FastAPI parsed it (SharedAnswers.hot)."""
    seen: list[bool] = []
    original = SharedAnswers.hot

    def counted(self: SharedAnswers, request: Any) -> Any:
        answer = original(self, request)
        seen.append(answer is not None)
        return answer

    monkeypatch.setattr(SharedAnswers, "hot", counted)
    return seen


class TestHotAnswers:
    """A request with the path and query string of one already answered gets the shared answer before
    FastAPI parses it: the same answer, with the same checks, and never one from before a write."""

    def test_the_same_answer_and_a_clients_own_write_seen_at_once(self, hot_answers: list[bool], client: TestClient,
                                                                   clock: FakeClock) -> None:
        first = client.get("/v1/top", params=TOP)
        again = client.get("/v1/top", params=TOP)
        assert hot_answers == [False, True]
        assert (again.content, again.headers["etag"]) == (first.content, first.headers["etag"])
        assert client.get("/v1/top", params=TOP, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
        assert client.post("/v1/events", json=_events(1, T0 - 5 * MINUTE_MS)).status_code == 202
        after = client.get("/v1/top", params=TOP).json()
        assert after["items"][0] == {**after["items"][0], "key": "key-0000", "count": 2}
        clock.advance(MINUTE_MS)  # a new minute: a new window, never the last minute's answer
        moved = client.get("/v1/top", params=TOP).json()
        assert _epoch_ms(moved["at"]) == T0 + MINUTE_MS
        # Another query string, an explicit `at` and bad parameters go through FastAPI as before.
        assert client.get("/v1/top", params={**TOP, "at": str(T0 // 1000)}).status_code == 200
        assert client.get("/v1/top", params={**TOP, "at": str(T0 // 1000)}).status_code == 200
        assert client.get("/v1/top", params={**TOP, "limit": "0"}).status_code == 422
        assert hot_answers[-3:] == [False, False, False]

    def test_an_app_that_mounts_the_router_gets_them_under_its_prefix(self, served_trend: Trend,
                                                                      hot_answers: list[bool]) -> None:
        app = FastAPI(lifespan=served_trend.lifespan)
        mount(app, served_trend, "/trend")
        with TestClient(app) as host:
            answers = [host.get("/trend/v1/top", params=TOP) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert hot_answers == [False, True, True]
        assert answers[2].json() == answers[0].json()

    @pytest.mark.slow
    def test_a_real_server_checks_the_read_rate_and_the_read_key_first(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 't.db'}"
        with Trend(database_url=url, worker_enabled=False) as writer:
            writer.ingest(_events(3, int(time.time() * 1000) - 5 * MINUTE_MS))
        # Reads need no key here; writes need the write key.
        limited = Served(url, "--no-worker", TREND_RATE_READS="5", TREND_API_KEY="a typed writer key!")
        try:
            with httpx.Client(base_url=limited.url) as http:
                codes = [http.get("/v1/top", params=TOP).status_code for _ in range(40)]
                # A made-up token with each request is the same client, not a new one with a rate of its own.
                made_up = [http.get("/v1/top", params=TOP, headers={"Authorization": f"Bearer made-up-{n}"})
                           .status_code for n in range(20)]
                own_key = http.get("/v1/top", params=TOP, headers={"Authorization": "Bearer a typed writer key!"})
        finally:
            limited.stop()
        # A burst of twice the rate, then refusals: a shared answer is no way around the client's rate.
        assert codes[0] == 200
        assert 429 in codes
        assert codes.count(200) <= 15, codes
        assert made_up.count(200) <= 2, made_up
        assert own_key.status_code == 200  # the server's own key is a client of its own
        keyed = Served(url, "--no-worker", TREND_READ_KEY="a typed reader key", TREND_API_KEY="a typed writer key!")
        try:
            with httpx.Client(base_url=keyed.url) as http:
                assert http.get("/v1/top", params=TOP,
                                headers={"Authorization": "Bearer a typed reader key"}).status_code == 200
                assert http.get("/v1/top", params=TOP).status_code == 401
                assert http.get("/v1/top", params=TOP, headers={"Authorization": "Bearer wrong"}).status_code == 403
                assert http.get("/v1/top", params=TOP,
                                headers={"Authorization": "Bearer a typed writer key!"}).status_code == 200
        finally:
            keyed.stop()


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.mark.slow
class TestSharedAnswersAreExact:
    def test_reads_racing_ingests_are_exact_as_of_their_at(self, tmp_path: Path) -> None:
        """Readers hammer one read while another process ingests. Every answer counts at least the
        events acknowledged before its ``at`` and at most those sent before the answer came back; its
        ``at`` is at most a second behind the request; and answers really are shared."""
        url = f"sqlite:///{tmp_path / 't.db'}"
        served = Served(url, "--no-worker")
        acknowledged: list[tuple[float, int]] = []  # (ms when stored, events)
        started: list[tuple[float, int]] = []  # (ms when sent, events)
        answers: list[tuple[float, float, int, int]] = []  # (sent ms, received ms, at, total)
        stop = threading.Event()

        def ingest() -> None:
            with Trend(database_url=url, worker_enabled=False) as writer:
                while not stop.is_set():
                    batch = _events(10, int(time.time() * 1000) - 5 * MINUTE_MS, 2)
                    started.append((time.time() * 1000, len(batch)))
                    writer.ingest(batch)
                    acknowledged.append((time.time() * 1000, len(batch)))
                    time.sleep(0.01)

        def read() -> None:
            with httpx.Client(base_url=served.url) as http:
                while not stop.is_set():
                    sent = time.time() * 1000
                    body = http.get("/v1/top", params=TOP).json()
                    answers.append((sent, time.time() * 1000, _epoch_ms(body["at"]),
                                    sum(item["count"] for item in body["items"])))

        threads = [threading.Thread(target=ingest), *(threading.Thread(target=read) for _ in range(4))]
        try:
            for thread in threads:
                thread.start()
            time.sleep(4)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
            served.stop()
        assert len(answers) > 50
        for sent, received, at, total in answers:
            low = sum(n for when, n in acknowledged if when < at)
            high = sum(n for when, n in started if when < received)
            assert low <= total <= high, (sent, at, low, total, high)
            assert sent - at <= 1_000
        assert len({at for _, _, at, _ in answers}) < len(answers)  # some answers were shared
