"""``trend.client`` against a real ``trend serve``: killed and restarted mid-stream, every event the
client reports delivered is stored exactly once; a full queue drops and counts instead of blocking;
bad events are set aside without losing their batch."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.deadlines import scaled
from tests.receiver import Receiver
from tests.reference import stored_events
from tests.servers import Served, free_port
from trend.client import AsyncTrendClient, TrendClient
from trend.service import Trend

pytestmark = pytest.mark.slow


def _stored_ids(database_url: str) -> Counter[str]:
    with Trend(database_url=database_url, worker_enabled=False) as trend:
        return Counter(str(event["event_id"]) for event in stored_events(trend))


class TestDelivery:
    def test_a_server_killed_and_restarted_mid_stream_loses_and_doubles_nothing(self, database_url: str) -> None:
        port = free_port()
        server = Served(database_url, "--no-worker", TREND_PORT=str(port))
        given_up: list[dict[str, Any]] = []
        client = TrendClient(server.url, batch_size=40, flush_interval=0.02, max_retries=40, timeout=2,
                             on_failure=lambda events, _why: given_up.extend(events))
        ids: list[str | None] = []
        sent_1000 = threading.Event()

        def produce() -> None:
            for n in range(3000):
                ids.append(client.track("search", f"key-{n % 97}", user_id=f"u{n % 13}", segment="kr"))
                if n == 1000:
                    sent_1000.set()
                time.sleep(0.001)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            assert sent_1000.wait(30)
            server.kill()  # SIGKILL: batches in flight get no answer, whether or not they were stored
            server = Served(database_url, "--no-worker", TREND_PORT=str(port))
            producer.join(60)
            assert client.flush(timeout=90)
        finally:
            client.close()
            server.stop()
        stats = client.stats
        assert stats.retries > 0  # the outage was met, not slept through
        assert (stats.dropped, stats.failed, stats.invalid, given_up) == (0, 0, 0, [])
        assert stats.delivered == stats.queued == 3000
        stored = _stored_ids(database_url)
        assert set(stored) == set(ids)
        assert max(stored.values()) == 1  # exactly once, retried batches included

    def test_a_full_queue_drops_the_new_event_counts_it_and_never_blocks(self, database_url: str) -> None:
        port = free_port()  # nobody listens: every send fails and the queue fills
        client = TrendClient(f"http://127.0.0.1:{port}", batch_size=10, max_queue=50, max_retries=1000, timeout=1)
        started = time.monotonic()
        ids = [client.track("search", f"k{n}") for n in range(500)]
        took = time.monotonic() - started
        assert took < 1.0  # 500 calls, none waiting for the network
        assert ids.count(None) == client.stats.dropped
        assert client.stats.dropped >= 500 - 50 - 10  # the queue, and at most one batch taken from it
        server = Served(database_url, "--no-worker", TREND_PORT=str(port))
        try:
            assert not client.flush(timeout=60)  # settled, but not everything was delivered: some dropped
            assert client.flush(timeout=60)  # nothing lost since that flush
        finally:
            client.close()
            server.stop()
        stats = client.stats
        assert stats.delivered == stats.queued == 500 - stats.dropped
        assert set(_stored_ids(database_url)) == {i for i in ids if i is not None}

    def test_invalid_events_are_set_aside_and_the_rest_of_the_batch_is_stored(
            self, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="trend.client")
        server = Served(database_url, "--no-worker")
        refused: list[tuple[Sequence[dict[str, Any]], str]] = []
        client = TrendClient(server.url, batch_size=100, flush_interval=5,
                             on_failure=lambda events, why: refused.append((events, why)))
        try:
            good = [client.track("search", f"k{n}") for n in range(60)]
            client.track("search", "x" * 300)  # longer than a key may be
            client.track("search", "ok", segment="s" * 100)  # longer than a segment may be
            good += [client.track("view", f"v{n}") for n in range(30)]
            assert not client.flush(timeout=30)  # two were not delivered
        finally:
            client.close()
            server.stop()
        assert client.stats.invalid == 2
        assert client.stats.delivered == 90
        assert sorted(e["key"][:1] for events, _ in refused for e in events) == ["o", "x"]
        # Each with its own reason, naming its field.
        assert sorted(why.split(":")[0] for _, why in refused) == ["422 key", "422 segment"]
        assert set(_stored_ids(database_url)) == set(good)
        # The server's refusals are logged too, once per field, as track()'s own are.
        logged = sorted(r.getMessage() for r in caplog.records if r.name == "trend.client")
        assert len(logged) == 2
        assert logged[0].startswith("trend: the server refused 1 events: 422 key: "), logged
        assert logged[1].startswith("trend: the server refused 1 events: 422 segment: "), logged

    @pytest.mark.parametrize("number", [10**5000, -(10**5000), 2**64 + 1], ids=["1e5000", "-1e5000", "2**64+1"])
    def test_track_never_raises_on_the_largest_integers(self, number: int) -> None:
        refused: list[str] = []
        client = TrendClient("http://127.0.0.1:9", on_failure=lambda _events, why: refused.append(why))
        try:
            assert client.track("search", "k", value=number) is None
            assert client.track("search", "k", ts=number) is None
        finally:
            client.close(1)
        assert client.stats.invalid == 2
        bits = f"an integer of {number.bit_length()} bits"
        assert refused == [f"value: expected a number from -1e15 to 1e15, got {bits}",
                           f"ts: expected epoch seconds, got {bits}"]

    def test_the_api_key_is_sent_and_a_wrong_one_fails_without_retrying(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker", TREND_API_KEY="s3cret-key")
        try:
            with TrendClient(server.url, api_key="s3cret-key", flush_interval=0.01) as right:
                right.track("search", "k")
                assert right.flush(10)
            wrong = TrendClient(server.url, api_key="wrong", flush_interval=0.01, max_retries=5)
            wrong.track("search", "k")
            assert not wrong.flush(10)  # settled at once (no retry), and not delivered
            wrong.close()
        finally:
            server.stop()
        assert right.stats.delivered == 1
        assert (wrong.stats.failed, wrong.stats.retries) == (1, 0)
        assert wrong.stats.last_error is not None
        assert wrong.stats.last_error.startswith("403")

    def test_close_gives_up_in_time_and_counts_what_was_unsent(self) -> None:
        client = TrendClient(f"http://127.0.0.1:{free_port()}", flush_interval=0.01, max_retries=1000, timeout=0.5)
        for n in range(20):
            client.track("search", f"k{n}")
        started = time.monotonic()
        assert not client.close(timeout=1)
        assert time.monotonic() - started < 4
        assert client.stats.failed == 20
        assert client.track("search", "late") is None  # closed: dropped, counted
        assert client.stats.dropped == 1


    def test_a_strange_answer_fails_its_batch_and_the_sending_goes_on(self) -> None:
        strange = Receiver()  # answers 202 with a body that is not trend's: not JSON
        strange.answers = [202] * 10
        client = TrendClient(strange.url.removesuffix("/hook"), flush_interval=0.01, max_retries=0)
        try:
            client.track("search", "a")
            assert not client.flush(10)
            client.track("search", "b")
            assert not client.flush(10)  # the thread outlived the first batch's error
        finally:
            client.close()
            strange.close()
        assert (client.stats.failed, client.stats.delivered) == (2, 0)


class TestPackingAndModes:
    def test_a_script_that_exits_without_close_still_sends_what_it_queued(self, database_url: str) -> None:
        """PostHog's and Segment's clients flush at exit; this one did not, and the events were lost."""
        server = Served(database_url, "--no-worker")
        script = ("import sys; from trend.client import TrendClient\n"
                  "client = TrendClient(sys.argv[1], flush_interval=60)\n"
                  "for n in range(3): client.track('search', f'exit-{n}')\n")
        try:
            done = subprocess.run([sys.executable, "-c", script, server.url], capture_output=True, text=True,
                                  timeout=scaled(60))
        finally:
            server.stop()
        assert done.returncode == 0, done.stderr
        with Trend(database_url=database_url, worker_enabled=False) as trend:
            assert sorted(e["key"] for e in stored_events(trend)) == ["exit-0", "exit-1", "exit-2"]

    def test_debug_shows_each_delivery_on_standard_error_and_is_quiet_without_it(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker")
        script = ("import sys; from trend.client import TrendClient\n"
                  "client = TrendClient(sys.argv[1], debug=sys.argv[2] == 'on')\n"
                  "client.track('search', 'a'); client.track('search', 'b', event_id='same')\n"
                  "client.track('search', 'b', event_id='same')\n"
                  "assert client.close(30)\n")
        try:
            runs = {mode: subprocess.run([sys.executable, "-c", script, server.url, mode], capture_output=True,
                                         text=True, timeout=scaled(60)) for mode in ("on", "off")}
        finally:
            server.stop()
        assert all(run.returncode == 0 for run in runs.values()), [run.stderr for run in runs.values()]
        assert "DEBUG trend.client: trend: delivered 3 events (1 duplicates) after 0 retries" in runs["on"].stderr
        assert runs["off"].stderr == ""

    def test_batches_are_gzipped_and_the_server_unpacks_them(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker")
        try:
            with TrendClient(server.url, flush_interval=0.01) as client:
                ids = [client.track("search", f"k{n % 9}", user_id=f"u{n}") for n in range(300)]
                assert client.flush(30)
            assert client.compress  # the server took them packed
            bomb = gzip.compress(b"[" + b" " * (64 << 20) + b"]")  # 64 MiB of JSON in about 64 KiB
            answer = httpx.post(f"{server.url}/v1/events", content=bomb,
                                headers={"content-type": "application/json", "content-encoding": "gzip"})
            broken = httpx.post(f"{server.url}/v1/events", content=b"\x1f\x8b not gzip",
                                headers={"content-type": "application/json", "content-encoding": "gzip"})
        finally:
            server.stop()
        assert set(_stored_ids(database_url)) == set(ids)
        assert answer.status_code == 413
        assert broken.status_code == 422

    def test_a_server_that_cannot_unpack_gets_plain_json_from_then_on(self) -> None:
        """A server of a release before gzip answers a packed body with 422 invalid_json."""
        plain = _PlainOnly()
        client = TrendClient(plain.url, flush_interval=0.01, max_retries=0)
        try:
            client.track("search", "a")
            assert client.flush(10)
            client.track("search", "b")
            assert client.flush(10)
        finally:
            client.close()
            plain.close()
        assert client.stats.delivered == 2
        assert client.compress is False
        assert plain.packed == 1  # the first only: then plain

    def test_sync_mode_sends_before_track_returns(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker")
        try:
            client = TrendClient(server.url, sync_mode=True)
            event_id = client.track("search", "now")
            stored = _stored_ids(database_url)
            refused = client.track("search", "   ")  # empty once normalized: the server refuses it
            client.close()
        finally:
            server.stop()
        assert stored == {event_id: 1}
        assert refused is None  # in sync mode an id means the server has the event
        assert client.stats.invalid == 1

    def test_disabled_sends_nothing_and_never_fails(self) -> None:
        client = TrendClient(f"http://127.0.0.1:{free_port()}", disabled=True)
        assert client.track("search", "k") is None
        assert client.close(1)
        assert client.stats.queued == client.stats.failed == 0


class _PlainOnly:
    """A server of an older release: 422 invalid_json to a gzipped body, 202 to plain JSON."""

    def __init__(self) -> None:
        self.packed = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer: dict[str, Any]
                if self.headers.get("Content-Encoding") == "gzip":
                    owner.packed += 1
                    status, answer = 422, {"error": {"code": "invalid_json", "message": "not JSON"}}
                else:
                    status, answer = 202, {"accepted": len(json.loads(body)), "duplicates": 0}
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode())

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TestImport:
    def test_the_client_loads_without_the_servers_layers(self) -> None:
        """An app server that only sends events pays for HTTP, not for SQLAlchemy, FastAPI or the scheduler."""
        loaded = subprocess.run([sys.executable, "-c", "import sys, trend.client; print(sorted(sys.modules))"],
                                capture_output=True, text=True, check=True).stdout
        for heavy in ("sqlalchemy", "fastapi", "apscheduler", "psycopg", "trend.service"):
            assert f"'{heavy}'" not in loaded, heavy


class TestAsyncClient:
    def test_track_never_awaits_and_aclose_delivers_everything(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker")

        async def app() -> AsyncTrendClient:
            async with AsyncTrendClient(server.url, batch_size=25, flush_interval=0.05) as client:
                for n in range(200):
                    client.track("search", f"k{n % 7}", user_id=f"u{n}")
                await asyncio.sleep(0)
                assert await client.flush(timeout=30)
            return client

        try:
            client = asyncio.run(app())
        finally:
            server.stop()
        assert client.stats.delivered == 200
        assert sum(_stored_ids(database_url).values()) == 200
