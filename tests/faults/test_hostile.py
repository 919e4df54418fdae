"""Hostile input over HTTP and in files, and the security review's checks (docs/reliability.md)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import TrendFactory
from tests.reference import stored_events
from tests.servers import Served
from trend.api.app import create_app
from trend.cli import main
from trend.cli.serving import check_exposure
from trend.config import load_settings
from trend.errors import ConfigError
from trend.logging import LOGGER_NAME
from trend.service import Trend

pytestmark = pytest.mark.faults


@pytest.fixture
def client(trend: Trend) -> Iterator[TestClient]:
    with TestClient(create_app(trend=trend), raise_server_exceptions=False) as test_client:
        yield test_client


NASTY_KEYS = [
    "'; DROP TABLE fact_events; --", "\" OR 1=1 --", "a%_\\", "😀" * 256, "한" * 256, "\u202eevil", "x\ty\nz",
    "<img src=x onerror=alert(1)>", "NULL", "🏳️‍🌈👨‍👩‍👧‍👦",
]


class TestHostileEvents:
    @pytest.mark.parametrize("key", NASTY_KEYS)
    def test_nasty_keys_are_stored_and_read_back_verbatim(self, client: TestClient, trend: Trend, key: str) -> None:
        """Verbatim after the key normalization (TREND_KEY_NORMALIZATION), which is all that changes them."""
        response = client.post("/v1/events", json={"event": "search", "key": key, "segment": key[:64]})
        assert response.status_code == 202
        [stored] = stored_events(trend)
        expected = trend.normalize_key(key)
        assert (stored["key"], stored["segment"]) == (expected, trend.normalize_key(key[:64]))
        top = client.get("/v1/top", params={"event": "search", "window": "5m"}).json()
        assert top["items"][0]["key"] == expected
        assert {"fact_events", "agg_1m"} <= _tables(trend)

    @pytest.mark.parametrize(("payload", "field"), [
        ({"event": "search", "key": "😀" * 257}, "key"),
        ({"event": "search", "key": "a\u0000b"}, "key"),
        ({"event": "search\u0000", "key": "a"}, "event"),
        ({"event": "search", "key": "a", "value": "1e3"}, "value"),
        ({"event": "search", "key": "a", "ts": "1763016660"}, "ts"),
        ({"event": "search", "key": {"nested": "object"}}, "key"),
        ({"event": "search", "key": ["a"]}, "key"),
        ('{"event": "search", "key": "a", "value": 1e309}', "value"),  # overflows to infinity when parsed
    ])
    def test_refused_with_422_naming_the_field(self, client: TestClient, trend: Trend, payload: object,
                                               field: str) -> None:
        body = payload if isinstance(payload, str) else json.dumps(payload)
        response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field
        assert stored_events(trend) == []

    @pytest.mark.parametrize("depth", [100, 10_000, 200_000])
    def test_deeply_nested_json_is_refused_not_crashed(self, client: TestClient, depth: int) -> None:
        body = "[" * depth + "]" * depth
        response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] in ("invalid_json", "invalid_event")

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                              "multipart/form-data; boundary=x", "application/xml"])
    def test_content_type_mismatch_is_415(self, client: TestClient, content_type: str) -> None:
        response = client.post("/v1/events", content=b'{"event": "search", "key": "a"}',
                               headers={"content-type": content_type})
        assert response.status_code == 415

    def test_an_unexpected_failure_is_a_500_without_a_trace(self, client: TestClient, trend: Trend,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(*_: object, **__: object) -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(trend, "top", boom)
        response = client.get("/v1/top", params={"event": "search"})
        assert response.status_code == 500
        assert response.json() == {"error": {"code": "internal_error", "message": "internal error", "index": None,
                                              "field": None}}
        assert "secret internals" not in response.text


def _tables(trend: Trend) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(trend.db.engine).get_table_names())


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class TestHostileClients:
    @pytest.fixture
    def served(self, tmp_path: Path) -> Iterator[Served]:
        server = Served(f"sqlite:///{tmp_path / 'hostile.db'}", "--no-worker")
        yield server
        server.stop()

    def test_a_100_mb_body_is_refused_early_without_being_read(self, served: Served) -> None:
        before = _rss_mb(served.process.pid)
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            chunk = b"[" + b" " * (1024 * 1024 - 1)
            for _ in range(100):
                sent += len(chunk)
                yield chunk

        try:
            response = httpx.post(f"{served.url}/v1/events", content=body(), timeout=30,
                                  headers={"content-type": "application/json"})
            assert response.status_code == 413
        except httpx.TransportError:
            pass  # the server may close the connection once it has answered 413
        assert _rss_mb(served.process.pid) - before < 40  # never held anywhere near 100 MB
        # Declared up front: refused from the header alone, before a byte of the body is sent.
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 104857600\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")

    def test_slow_clients_do_not_hold_up_others(self, served: Served) -> None:
        slow = []
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
            slow.append(sock)
        try:
            began = time.monotonic()
            for _ in range(5):
                assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
                for sock in slow:
                    sock.sendall(b"X")
            assert time.monotonic() - began < 3
        finally:
            for sock in slow:
                sock.close()


class TestFiles:
    def test_csv_with_broken_quoting_reports_lines_and_keeps_the_good_ones(self, database_url: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        now = time.time()
        text = (f'event,key,ts\nsearch,good,{now - 60}\nsearch,"bro"ken,{now - 60}\n'
                f'search,"unterminated,{now - 60}\n')
        result = CliRunner().invoke(main, ["ingest", "--format", "csv", "--json", "-"], input=text)
        assert result.exit_code == 1
        summary = json.loads(result.stdout)
        assert summary["accepted"] == 1
        assert [e["line"] for e in summary["errors"]] == [3, 4]
        assert all("CSV" in e["message"] for e in summary["errors"])


class TestSecurity:
    def test_secrets_stay_out_of_settings_reprs_logs_and_errors(self, make_trend: TrendFactory,
                                                                trend_logs: pytest.LogCaptureFixture) -> None:
        trend = make_trend(api_key="k-very-secret", read_key="r-very-secret")
        assert "very-secret" not in repr(trend.settings)
        with_password = load_settings(database_url="postgresql://app:pg-very-secret@db.internal:5432/trend")
        assert "pg-very-secret" not in repr(with_password)
        assert "pg-very-secret" not in str(with_password)
        with TestClient(create_app(trend=trend)) as client:
            for header in ("Bearer k-very-secre", "Bearer r-very-secret", "k-very-secret"):
                response = client.post("/v1/events", json={"event": "s", "key": "k"}, headers={"Authorization": header})
                assert response.status_code in (401, 403)
                assert "very-secret" not in response.text
        logging.getLogger(LOGGER_NAME).info("settings: %s", trend.settings)
        assert not any("very-secret" in record.getMessage() for record in trend_logs.records)

    def test_serve_binds_to_loopback_by_default_and_refuses_beyond_it_without_a_key(
        self, trend_logs: pytest.LogCaptureFixture
    ) -> None:
        serve = main.get_command(click.Context(main), "serve")
        assert serve is not None
        serve_options = {param.name: param.default for param in serve.params}
        assert serve_options["host"] == "127.0.0.1"
        assert not check_exposure("127.0.0.1", load_settings())
        assert not check_exposure("::1", load_settings())
        assert not check_exposure("0.0.0.0", load_settings(api_key="k"))
        with pytest.raises(ConfigError) as refused:
            check_exposure("0.0.0.0", load_settings())
        assert refused.value.setting == "TREND_API_KEY"
        assert check_exposure("0.0.0.0", load_settings(allow_keyless=True))
        assert any("WITHOUT TREND_API_KEY" in r.getMessage() and r.levelname == "WARNING" for r in trend_logs.records)

    def test_the_dashboard_never_inlines_data(self, client: TestClient) -> None:
        """Keys reach the page only through textContent in app.js; the page forbids inline scripts."""
        page = client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = client.get("/assets/app.js").text
        assert "innerHTML" not in script
        assert "insertAdjacentHTML" not in script
        assert client.get("/assets/..%2Fconfig.py").status_code == 404
