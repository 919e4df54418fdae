"""What outsiders broke, each through the path they took: a real ``trend serve``, a real receiver, a
real ``trend ingest`` process fed by a real pipe. Each test failed before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import insert
from standardwebhooks.webhooks import Webhook

from tests.conftest import TrendFactory
from tests.deadlines import scaled
from tests.receiver import Receiver
from tests.reference import group_events, stored_events, table_rows
from tests.servers import Served, environment
from trend.clock import FakeClock
from trend.model import LEVELS, MINUTE_MS
from trend.service import Trend
from trend.storage.shared.schema import fact_events, rollup_dirty
from trend.storage.write import alerts as alert_store

pytestmark = pytest.mark.slow

ALLOW_LOOPBACK = {"TREND_ALERT_WEBHOOK_ALLOW": "127.0.0.1"}
# Secrets people type, which the Standard Webhooks libraries cannot turn into a key of 16 bytes:
# base64 of a length 1 more than a multiple of 4, nothing left after dropping what is not base64, too few bytes.
UNUSABLE_SECRETS = ["abcdefghijklmnopq", "correct horse battery staple", "whsec_abcdefghijklmnopqrstu",
                    "----------------", "________________", "whsec_----------------", "my-own-secret-1234567",
                    "비밀번호비밀번호비밀번호비밀번호비밀번호"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def _trend(url: str) -> Trend:
    """A Trend in this process on the server's database: to look at it, or to write what an earlier
    release could have written."""
    return Trend(database_url=url, worker_enabled=False)


def _run(server: Served, job: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/jobs/{job}/run", timeout=scaled(60))
    assert response.status_code == 200, response.text
    [level] = response.json()["levels"]
    return dict(level)


def _threshold_rule(server: Served, url: str, key: str, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/alerts", json={
        "event": "search", "condition": "threshold", "key": key, "threshold": 1, "window": "15m", "url": url,
        **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestSecrets:
    @pytest.mark.parametrize("secret", UNUSABLE_SECRETS)
    def test_a_secret_that_cannot_sign_is_a_422_naming_secret(self, database_url: str, secret: str) -> None:
        """Before: 201, and every later delivery of every rule stayed pending."""
        server = Served(database_url, "--no-worker")
        try:
            response = httpx.post(f"{server.url}/v1/alerts", json={
                "event": "search", "condition": "rising", "url": "https://hooks.example.com/x", "secret": secret})
            listed = httpx.get(f"{server.url}/v1/alerts").json()["rules"]
        finally:
            server.stop()
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "secret"
        assert listed == []

    def test_a_typed_secret_that_decodes_signs_deliveries_the_library_verifies(
            self, database_url: str, receiver: Receiver) -> None:
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the convention's own example, typed
        server = Served(database_url, "--no-worker", **ALLOW_LOOPBACK)
        try:
            rule = _threshold_rule(server, receiver.url, "우산", secret=secret)
            tested = httpx.post(f"{server.url}/v1/alerts/{rule['id']}/test", timeout=scaled(30))
        finally:
            server.stop()
        assert tested.json()["status"] == "delivered"
        [got] = receiver.received
        assert Webhook(secret).verify(got["body"], got["headers"])["test"] is True

    def test_a_stored_rule_that_cannot_sign_fails_alone_and_the_others_are_delivered(
            self, database_url: str, receiver: Receiver) -> None:
        """A rule stored before secrets were checked. Before: no delivery of any rule was sent or
        recorded, the alerts run stayed "running", and its test answered 500."""
        server = Served(database_url, "--no-worker", **ALLOW_LOOPBACK)
        try:
            good = _threshold_rule(server, receiver.url, "우산")
            with _trend(database_url) as trend, trend.db.write() as tx:
                bad = alert_store.insert_rule(tx, {
                    "name": "old", "event": "search", "by": "count", "condition": "threshold", "window": "15m",
                    "key": "우산", "threshold": 1, "url": receiver.url, "secret": "abcdefghijklmnopq",
                    "cooldown_ms": 60_000}, int(time.time() * 1000))
            stored = httpx.post(f"{server.url}/v1/events", json={"event": "search", "key": "우산"})
            assert stored.status_code == 202
            run = _run(server, "alerts")
            deliveries = {rule: httpx.get(f"{server.url}/v1/alerts/{rule}/deliveries").json()["deliveries"]
                          for rule in (good["id"], bad)}
            tested = httpx.post(f"{server.url}/v1/alerts/{bad}/test", timeout=scaled(30))
            jobs = {job["job"]: job for job in httpx.get(f"{server.url}/v1/jobs").json()["jobs"]}
        finally:
            server.stop()
        assert run["outcome"] == "ran"
        [delivered] = deliveries[good["id"]]
        assert delivered["status"] == "delivered"
        assert [json.loads(r["body"])["rule"]["id"] for r in receiver.received] == [good["id"]]
        [refused] = deliveries[bad]
        assert (refused["status"], refused["attempts"]) == ("failed", 1)
        assert "secret cannot sign" in refused["last_error"]
        assert tested.status_code == 200, tested.text
        assert tested.json()["status"] == "failed"
        assert jobs["alerts"]["last_run"]["outcome"] == "ran"


class TestHugeValues:
    @pytest.mark.parametrize("value", [1.7e308, -1.7e308, 1e15 * (1 + 1e-15), 2e15])
    def test_values_beyond_the_bound_are_a_422_naming_value_and_nothing_is_stored(
            self, database_url: str, value: float) -> None:
        """Before: accepted (202), and PostgreSQL's 1m job then failed on that bucket at every run."""
        server = Served(database_url, "--no-worker")
        try:
            batch = [{"event": "sumtest", "key": "inf", "value": value}, {"event": "sumtest", "key": "ok"}]
            response = httpx.post(f"{server.url}/v1/events", json=batch)
        finally:
            server.stop()
        assert response.status_code == 422, response.text
        assert (response.json()["error"]["field"], response.json()["error"]["index"]) == ("value", 0)
        with _trend(database_url) as trend:
            assert stored_events(trend) == []

    def test_the_largest_values_allowed_sum_exactly_in_every_level(self, database_url: str) -> None:
        now = int(time.time() * 1000)
        minute = now - now % MINUTE_MS - 2 * MINUTE_MS
        values = [1e15, 1e15, -1e15, 5e-324, 1e15]
        server = Served(database_url, "--no-worker")
        try:
            response = httpx.post(f"{server.url}/v1/events", json=[
                {"event": "sumtest", "key": "big", "value": v, "ts": minute / 1000} for v in values])
            assert response.status_code == 202, response.text
            assert _run(server, "agg_1m")["outcome"] == "ran"
            series = httpx.get(f"{server.url}/v1/series", params={
                "event": "sumtest", "key": "big", "interval": "1m", "start": str(minute / 1000),
                "end": str((minute + MINUTE_MS) / 1000)})
        finally:
            server.stop()
        [point] = json.loads(series.text, parse_constant=_no_constants)["points"]
        assert (point["count"], point["sum"], point["max"]) == (5, 2e15 + 5e-324, 1e15)
        with _trend(database_url) as trend:
            assert table_rows(trend, LEVELS[0]) == group_events(stored_events(trend), LEVELS[0])


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def _poison(database_url: str, backend: str, minute: int) -> None:
    """A bucket the database refuses to roll up, as a release before values were bounded could leave
    one: on PostgreSQL two values whose sum overflows a double; on SQLite, which sums to infinity
    instead, a trigger that refuses the bucket's row."""
    with _trend(database_url) as trend, trend.db.write() as tx:
        if backend == "sqlite":
            tx.exec_driver_sql("CREATE TRIGGER poison BEFORE INSERT ON agg_1m WHEN NEW.key = 'inf' "
                               "BEGIN SELECT RAISE(ABORT, 'value out of range: overflow'); END")
        rows = [{"ts": minute + n, "event": "sumtest", "segment": "", "key": "inf", "user_id": "poisoner",
                 "value": 1.7e308, "received_at": minute, "minute": minute} for n in range(2)]
        tx.execute(insert(fact_events), rows)
        tx.execute(insert(rollup_dirty).values(level="1m", bucket=minute, version=1))


class TestOneBucketNeverStallsALevel:
    def test_a_bucket_the_database_refuses_waits_and_the_later_ones_are_rolled_up(
            self, database_url: str, backend: str) -> None:
        """Before: the 1m job failed on the poisoned bucket at every run and no later bucket was rolled
        up; /healthz said ok and series answered 500 (PostgreSQL) or "sum": Infinity (SQLite)."""
        now = int(time.time() * 1000)
        poisoned = now - now % MINUTE_MS - 3 * MINUTE_MS
        later = poisoned + MINUTE_MS
        server = Served(database_url, "--no-worker")
        try:
            _poison(database_url, backend, poisoned)
            fine = [{"event": "sumtest", "key": f"k{n % 3}", "ts": (later + n) / 1000} for n in range(30)]
            assert httpx.post(f"{server.url}/v1/events", json=fine).status_code == 202
            first = _run(server, "agg_1m")
            health = httpx.get(f"{server.url}/healthz").json()
            metrics = httpx.get(f"{server.url}/metrics").text
            top = httpx.get(f"{server.url}/v1/top", params={"event": "sumtest", "window": "15m"})
            erased = httpx.delete(f"{server.url}/v1/users/poisoner")
            healed = _run(server, "agg_1m")  # a run a person starts tries a waiting bucket at once
            after = httpx.get(f"{server.url}/healthz").json()
        finally:
            server.stop()
        assert first["outcome"] == "failed"
        assert first["buckets"] == 1  # the later bucket went on
        assert "value out of range" in first["error"]
        assert health["status"] == "degraded"
        [failing] = health["failing_buckets"]
        assert (failing["level"], failing["failures"]) == ("1m", 1)
        assert 'trend_failing_buckets{level="1m"} 1.0' in metrics
        assert top.status_code == 200
        json.loads(top.text, parse_constant=_no_constants)
        assert erased.json()["events"] == 2
        assert healed["outcome"] == "ran"
        assert (after["status"], after["failing_buckets"]) == ("ok", [])
        with _trend(database_url) as trend:
            assert table_rows(trend, LEVELS[0]) == group_events(stored_events(trend), LEVELS[0])

    def test_a_scheduled_run_passes_a_waiting_bucket_over_until_its_retry_time(self, make_trend: TrendFactory,
                                                                               database_url: str, backend: str,
                                                                               clock: FakeClock) -> None:
        trend = make_trend()
        trend.db.ensure_schema()
        poisoned = clock.now_ms() - clock.now_ms() % MINUTE_MS
        _poison(database_url, backend, poisoned)
        clock.advance(2 * MINUTE_MS)
        scheduled = trend.rollups.runner("1m")
        assert scheduled.run(retry_waiting=False).outcome == "failed"
        assert scheduled.run(retry_waiting=False).outcome == "skipped_no_data"  # waiting: no work, no error
        clock.advance(MINUTE_MS + 1)
        assert scheduled.run(retry_waiting=False).outcome == "failed"
        [failing] = trend.failing_buckets()
        assert failing.failures == 2
        assert failing.retry_at == clock.now_ms() + 2 * MINUTE_MS  # doubling


class TestErasure:
    def test_a_firing_of_a_capitalized_key_is_redacted(self, database_url: str, receiver: Receiver) -> None:
        """Before: the rule kept "OnlyKey3-MC", the stored key was "onlykey3-mc", and the firing survived."""
        server = Served(database_url, "--no-worker", **ALLOW_LOOPBACK)
        try:
            rule = _threshold_rule(server, receiver.url, "OnlyKey3-MC")
            assert httpx.post(f"{server.url}/v1/events", json={
                "event": "search", "key": "OnlyKey3-MC", "user_id": "PRIV-3"}).status_code == 202
            assert _run(server, "alerts")["outcome"] == "ran"
            fired = httpx.get(f"{server.url}/v1/alerts/{rule['id']}/deliveries").json()["deliveries"]
            erased = httpx.delete(f"{server.url}/v1/users/PRIV-3")
            after = httpx.get(f"{server.url}/v1/alerts/{rule['id']}/deliveries").json()["deliveries"]
        finally:
            server.stop()
        assert rule["key"] == "onlykey3-mc"
        assert [d["key"] for d in fired] == ["onlykey3-mc"]
        assert erased.json()["events"] == 1
        assert [d["key"] for d in after] == [None]
        with _trend(database_url) as trend, trend.db.read() as tx:
            assert "onlykey3" not in json.dumps(alert_store.deliveries(tx)).lower()

    @pytest.mark.parametrize(("user", "path"), [("team/alice", "team%2Falice"), ("team/bob", "team/bob"),
                                                ("a/../b", "?user_id=a%2F..%2Fb"), ("..", "?user_id=..")])
    def test_a_user_id_with_a_slash_is_erased_over_http(self, database_url: str, user: str, path: str) -> None:
        """Before: 404 both ways; only the command line could erase it."""
        server = Served(database_url, "--no-worker")
        try:
            assert httpx.post(f"{server.url}/v1/events", json=[
                {"event": "search", "key": "k", "user_id": user}, {"event": "search", "key": "k", "user_id": "x"}
            ]).status_code == 202
            # As written on the wire (httpx would resolve dot segments): curl --path-as-is.
            raw = f"/v1/users{path}" if path.startswith("?") else f"/v1/users/{path}"
            response = httpx.request("DELETE", httpx.URL(server.url).copy_with(raw_path=raw.encode()))
        finally:
            server.stop()
        assert response.status_code == 200, response.text
        assert (response.json()["user_id"], response.json()["events"]) == (user, 1)
        with _trend(database_url) as trend:
            assert [e["user_id"] for e in stored_events(trend)] == ["x"]


def _ingest_process(database_url: str, *arguments: str, stdin: Any = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "trend", "ingest", *arguments], stdin=stdin, capture_output=True,
                          env=environment(database_url), timeout=scaled(60))


def _piped(database_url: str, text: bytes) -> subprocess.CompletedProcess[bytes]:
    """``printf ... | trend ingest - --json``: the bytes through a real pipe."""
    return subprocess.run([sys.executable, "-m", "trend", "ingest", "-", "--json"], input=text, capture_output=True,
                          env=environment(database_url), timeout=scaled(60))


class TestStandardInput:
    LINES: ClassVar = [{"event": "search", "key": "우산"}, {"event": "search", "key": "Umbrella "},
                       {"event": "view", "key": "b"}]

    def test_a_real_pipe_is_ingested(self, database_url: str) -> None:
        """Before: `ValueError: I/O operation on closed file`, exit 1, nothing stored."""
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in self.LINES).encode()
        done = _piped(database_url, text)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["accepted"] == 3
        with _trend(database_url) as trend:
            assert sorted(e["key"] for e in stored_events(trend)) == ["b", "umbrella", "우산"]

    def test_a_file_redirected_to_standard_input_as_csv(self, database_url: str, tmp_path: Path) -> None:
        path = tmp_path / "events.csv"
        path.write_text("event,key,segment\nsearch,우산,KR\nsearch,,kr\nsearch,b,\n", encoding="utf-8")
        with path.open("rb") as redirected:
            done = _ingest_process(database_url, "-", "--format", "csv", "--json", stdin=redirected)
        assert done.returncode == 1  # a bad line: the good ones are stored
        result = json.loads(done.stdout)
        assert (result["accepted"], result["rejected"]) == (2, 1)
        assert result["errors"] == [{"line": 3, "field": "key", "message": result["errors"][0]["message"]}]
        with _trend(database_url) as trend:
            assert sorted((e["key"], e["segment"]) for e in stored_events(trend)) == [("b", ""), ("우산", "kr")]

    def test_bytes_that_are_not_utf8_are_a_bad_line_not_a_crash(self, database_url: str) -> None:
        text = b'{"event":"search","key":"a"}\n{"event":"search","key":"\xff\xfe"}\n{"event":"search","key":"c"}\n'
        done = _piped(database_url, text)
        assert done.returncode == 1, done.stderr
        result = json.loads(done.stdout)
        assert (result["accepted"], [e["line"] for e in result["errors"]]) == (2, [2])
        assert b"Traceback" not in done.stderr


    @pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # refused before any database is asked
    @pytest.mark.parametrize(("text", "said"), [
        (b'[{"event":"search","key":"x"}]\n', "a JSON array"),
        (b'x{"event":"search","key":"x"}\n', "neither a JSON object"),
        (b'\xff{"event":"search","key":"x"}\n{"event":"search","key":"y"}\n', "not valid UTF-8"),
        ('{"event":"search","key":"x"}\n'.encode("utf-16"), "UTF-16"),
    ])
    def test_input_that_is_neither_json_lines_nor_csv_is_refused_not_stored_as_nothing(
            self, database_url: str, text: bytes, said: str) -> None:
        """Before: read as a CSV whose header was broken, so as an empty file: "0 accepted", exit 0."""
        done = _piped(database_url, text)
        assert done.returncode == 2, done.stdout + done.stderr
        assert said in json.loads(done.stdout)["error"]["message"]
        assert b"Traceback" not in done.stderr
        with _trend(database_url) as trend:
            assert stored_events(trend) == []


    def test_a_file_ingested_again_without_resume_is_said_to_count_twice(self, database_url: str,
                                                                          tmp_path: Path) -> None:
        path = tmp_path / "day.jsonl"
        path.write_text('{"event": "search", "key": "a"}\n{"event": "search", "key": "b", "event_id": "b1"}\n')
        first = _ingest_process(database_url, str(path), "--json", stdin=subprocess.DEVNULL)
        again = _ingest_process(database_url, str(path), "--json", stdin=subprocess.DEVNULL)
        resumed = _ingest_process(database_url, str(path), "--resume", "--json", stdin=subprocess.DEVNULL)
        assert [json.loads(done.stdout)["ingested_before"] for done in (first, again)] == [False, True]
        assert b"count" not in first.stderr
        assert b"now count twice" in again.stderr
        assert (json.loads(again.stdout)["accepted"], json.loads(again.stdout)["duplicates"]) == (1, 1)
        assert json.loads(resumed.stdout)["accepted"] == 0
        with _trend(database_url) as trend:
            assert sorted(e["key"] for e in stored_events(trend)) == ["a", "a", "b"]


class TestDatabaseUrls:
    @pytest.mark.parametrize(("url", "said"), [
        ("mysql://root@127.0.0.1:3306/", "names no database"),
        ("mysql://root@127.0.0.1:3306", "names no database"),
        ("mysql://root@127.0.0.1:3306/trend?foo=bar", "does not take: foo"),
        ("mysql://root@127.0.0.1:3306/trend?ssl_ca=/no/such/file", "cannot be used to connect"),
        ("oracle://u@h/db", "expected sqlite:///PATH or postgresql://"),
    ])
    def test_a_url_trend_cannot_use_stops_the_command_naming_the_setting(self, url: str, said: str) -> None:
        """Before: an AssertionError or TypeError from the driver, as a traceback. No server is needed:
        each is refused before a connection is made."""
        done = subprocess.run([sys.executable, "-m", "trend", "status"], capture_output=True, text=True,
                              env=environment(url), timeout=scaled(60))
        assert done.returncode != 0
        assert "TREND_DATABASE_URL" in done.stderr, done.stderr
        assert said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


class TestByteOrderMarks:
    def test_a_csv_saved_by_excel_and_a_csv_on_standard_input(self, database_url: str, tmp_path: Path) -> None:
        """Before: the mark made the header's first column unknown (exit 2); a CSV piped in was read as
        JSON Lines, every line refused."""
        path = tmp_path / "excel.csv"
        path.write_bytes(b"\xef\xbb\xbfevent,key\r\nsearch,bom\r\n")
        done = _ingest_process(database_url, str(path), "--json", stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
        piped = _piped(database_url, b"event,key\nsearch,piped\n")
        assert piped.returncode == 0, piped.stdout + piped.stderr
        lines = _piped(database_url, b'\xef\xbb\xbf{"event": "search", "key": "marked"}\n')
        assert lines.returncode == 0, lines.stdout + lines.stderr
        with _trend(database_url) as trend:
            assert sorted(e["key"] for e in stored_events(trend)) == ["bom", "marked", "piped"]


class TestSmallerHoles:
    def test_port_zero_is_a_422(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker")
        try:
            response = httpx.post(f"{server.url}/v1/alerts", json={
                "event": "search", "condition": "rising", "url": "http://8.8.8.8:0/"})
        finally:
            server.stop()
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "url"

    def test_a_refusal_does_not_reveal_what_the_name_resolves_to(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker")
        try:
            response = httpx.post(f"{server.url}/v1/alerts", json={
                "event": "search", "condition": "rising", "url": "http://localhost:9/hook"})
        finally:
            server.stop()
        assert response.status_code == 422
        assert "localhost" in response.text
        assert "127.0.0.1" not in response.text
        assert "::1" not in response.text

    def test_keyless_with_every_origin_allowed_another_page_sees_only_the_webhooks_host(
            self, database_url: str) -> None:
        """Before: any web page read the full webhook URLs, with their tokens."""
        server = Served(database_url, "--no-worker", TREND_CORS_ORIGINS="*")
        try:
            url = "https://8.8.8.8/services/T000/B000/XXXXSECRETTOKEN"  # a literal: tests have no DNS
            assert httpx.post(f"{server.url}/v1/alerts", json={
                "event": "search", "condition": "rising", "url": url}).status_code == 201
            from_page = httpx.get(f"{server.url}/v1/alerts", headers={
                "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}).json()["rules"]
            from_program = httpx.get(f"{server.url}/v1/alerts").json()["rules"]
        finally:
            server.stop()
        assert [r["url"] for r in from_page] == ["https://8.8.8.8"]
        assert [r["url"] for r in from_program] == [url]

    def test_allowed_hosts_star_does_not_let_another_site_write(self, database_url: str) -> None:
        """Before: TREND_ALLOWED_HOSTS='*' silently lifted the keyless cross-site write refusal."""
        server = Served(database_url, "--no-worker", TREND_ALLOWED_HOSTS="*")
        try:
            event = {"event": "search", "key": "k"}
            other = httpx.post(f"{server.url}/v1/events", json=event, headers={"Origin": "https://evil.example"})
            own = httpx.post(f"{server.url}/v1/events", json=event,
                             headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
        finally:
            server.stop()
        assert other.status_code == 403
        assert own.status_code == 202

    def test_dimensions_are_bounded(self, database_url: str) -> None:
        server = Served(database_url, "--no-worker")
        try:
            batch = [{"event": f"e{n:04d}", "key": "k"} for n in range(600)]
            batch += [{"event": "e0000", "key": "k", "segment": f"s{n:03d}"} for n in range(300)]
            assert httpx.post(f"{server.url}/v1/events", json=batch).status_code == 202
            found = httpx.get(f"{server.url}/v1/dimensions").json()
        finally:
            server.stop()
        assert len(found["events"]) == 500
        assert found["truncated"] is True
        assert len(found["events"][0]["segments"]) == 200


class TestAlertsReadBeforeTheyWrite:
    def test_another_writer_is_never_locked_out_while_a_rule_is_evaluated(self, make_trend: TrendFactory,
                                                                          database_url: str, backend: str) -> None:
        """Before, on SQLite: the evaluation's queries ran inside its write transaction, and another
        connection got "database is locked"."""
        trend = make_trend(sqlite_busy_timeout_ms=200)
        other = make_trend(sqlite_busy_timeout_ms=200)
        trend.ingest([{"event": "search", "key": "k"}])
        trend.add_alert(event="search", condition="threshold", key="k", threshold=1, window="15m",
                        url="https://8.8.8.8/x")
        written: list[int] = []
        evaluate = trend.queries.key_figures

        def key_figures(*args: Any, **kwargs: Any) -> Any:
            written.append(other.ingest([{"event": "search", "key": "during"}]).accepted)  # locked out before
            return evaluate(*args, **kwargs)

        trend.queries.key_figures = key_figures  # type: ignore[method-assign]
        trend.alerts.deliver = lambda *_args, **_kw: 0  # type: ignore[method-assign]  # no receiver here
        [report] = trend.run_job("alerts")
        assert report.outcome == "ran"
        assert written == [1]
        with trend.db.read() as tx:
            [delivery] = alert_store.deliveries(tx)
        assert delivery["key"] == "k"


class TestFencedDeliveries:
    def test_a_lease_that_ran_out_before_the_send_sends_nothing_and_the_next_lease_sends_once(
            self, make_trend: TrendFactory, receiver: Receiver, clock: FakeClock) -> None:
        """Before: the lease was taken with the run's start time, and a send started whatever was left
        of it; on a starved machine another process took the delivery over and both sent it."""
        trend = make_trend(alert_webhook_allow=["127.0.0.1/32"])
        trend.ingest([{"event": "search", "key": "k"}])
        trend.add_alert(event="search", condition="threshold", key="k", threshold=1, window="15m", url=receiver.url)
        trend.alerts.deliver = lambda *_args, **_kw: 0  # type: ignore[method-assign]  # evaluate only
        trend.run_job("alerts")
        late = make_trend(alert_webhook_allow=["127.0.0.1/32"])
        leased_at = clock.now_ms()

        class Starved:  # the clock of a process that stalled between the lease and the send
            calls = 0

            def now_ms(self) -> int:
                Starved.calls += 1
                return leased_at if Starved.calls == 1 else leased_at + late.alerts.lease_ms

        late.alerts.clock = Starved()
        assert late.alerts.deliver(leased_at) == 1
        assert receiver.received == []
        clock.advance(1)
        other = make_trend(alert_webhook_allow=["127.0.0.1/32"])
        assert other.alerts.deliver(clock.now_ms()) == 1
        assert len(receiver.received) == 1
        with other.db.read() as tx:
            [delivery] = alert_store.deliveries(tx)
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)

    def test_an_outcome_recorded_after_the_lease_was_taken_over_is_not_written(self, trend: Trend,
                                                                                clock: FakeClock) -> None:
        with trend.db.write() as tx:
            rule = alert_store.insert_rule(tx, {
                "name": "r", "event": "search", "by": "count", "condition": "rising", "window": "15m",
                "url": "https://hooks.example.com/x", "secret": "s" * 24, "cooldown_ms": 60_000}, clock.now_ms())
            alert_store.insert_delivery(tx, "d", rule, "k", "{}", clock.now_ms())
            [first] = alert_store.lease_due(tx, clock.now_ms(), 1_000, 1)
            [second] = alert_store.lease_due(tx, clock.now_ms() + 2_000, 1_000, 1)  # the first ran out
            assert not alert_store.finish_attempt(tx, "d", lease=first["lease_until"], status="failed", attempts=1,
                                                  next_attempt_at=0, last_status=500, last_error="x",
                                                  delivered_at=None)
            assert alert_store.finish_attempt(tx, "d", lease=second["lease_until"], status="delivered", attempts=1,
                                              next_attempt_at=0, last_status=200, last_error=None,
                                              delivered_at=clock.now_ms())
