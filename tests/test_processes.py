"""``trend serve`` and ``trend rollup`` as real processes: clean exits on SIGTERM, a busy port, a
SQLite path that cannot exist."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.servers import Served, answers, environment, free_port
from trend.clock import FakeClock
from trend.model import MINUTE_MS
from trend.service import Trend
from trend.storage.write.runs import all_runs

pytestmark = pytest.mark.slow  # real trend processes: make test, not make check

TREND = [sys.executable, "-m", "trend"]


class TestServe:
    def test_sigterm_after_a_clean_stop_exits_zero(self, tmp_path: Path) -> None:
        served = Served(f"sqlite:///{tmp_path / 't.db'}")
        stderr = served.stop()
        assert served.process.returncode == 0, stderr
        assert "Traceback" not in stderr

    def test_a_busy_port_fails_without_claiming_to_serve(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run([*TREND, "serve", "--port", str(port), "--no-worker"],
                                    env=environment(f"sqlite:///{tmp_path / 't.db'}", TREND_LOG_LEVEL="INFO"),
                                    capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "serving http" not in output
        assert "address already in use" in output.lower()
        assert str(port) in output

    def test_a_sqlite_path_in_a_missing_directory_names_the_path(self) -> None:
        result = subprocess.run([*TREND, "status"], env=environment("sqlite:////nonexistent/dir/t.db"),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "TREND_DATABASE_URL" in result.stderr
        assert "/nonexistent/dir" in result.stderr
        assert "Traceback" not in result.stderr


class TestRollupCommand:
    def test_sigterm_stops_after_the_current_bucket_and_closes_the_run_record(self, tmp_path: Path) -> None:
        """A long catch-up stopped by SIGTERM: the buckets done stay done, the run record says
        interrupted (not running), the rest stays marked, and the exit is clean."""
        url = f"sqlite:///{tmp_path / 't.db'}"
        now = int(time.time() * 1000)
        seed = Trend(database_url=url, worker_enabled=False, clock=FakeClock(now))
        start = now - now % MINUTE_MS - 3_000 * MINUTE_MS
        for part in range(0, 3_000, 500):
            seed.ingest([{"event": "search", "key": f"k{n % 50}", "ts": (start + (part + m) * MINUTE_MS) / 1000}
                         for m in range(500) for n in range(20)])
        seed.close()
        log = tmp_path / "rollup.log"
        with log.open("w") as out:
            process = subprocess.Popen([*TREND, "rollup", "--level", "1m"], stdout=out, stderr=out,
                                       env=environment(url, TREND_LOG_LEVEL="DEBUG"))
        try:
            deadline = time.monotonic() + 60
            while log.read_text().count("1m aggregation completed") < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0, log.read_text()[-2000:]
        finally:
            if process.poll() is None:
                process.kill()
        check = Trend(database_url=url, worker_enabled=False, clock=FakeClock(now))
        with check.db.read() as tx:
            runs = all_runs(tx, "agg_1m")
            left = tx.exec_driver_sql("SELECT count(*) FROM rollup_dirty WHERE level = '1m'").scalar()
            done = tx.exec_driver_sql("SELECT count(DISTINCT bucket) FROM agg_1m").scalar()
        check.close()
        assert [run.outcome for run in runs] == ["interrupted"]
        assert 0 < int(done or 0) < 3_000
        assert int(left or 0) == 3_000 - int(done or 0)
        assert "interrupted" in log.read_text()
        assert "Traceback" not in log.read_text()


class TestOversizedBodies:
    def test_a_client_that_writes_the_whole_body_first_reads_the_413(self, tmp_path: Path) -> None:
        """Python's urllib sends all of a body before it reads the answer: it must get the 413, not a reset."""
        served = Served(f"sqlite:///{tmp_path / 't.db'}", "--no-worker", TREND_MAX_BODY_BYTES="1048576")
        try:
            event = b'{"event": "search", "key": "k"}'
            body = b'{"events": [' + b",".join([event] * 1_200_000) + b"]}"  # 40 MiB against a 1 MiB limit
            request = urllib.request.Request(f"{served.url}/v1/events", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 413
            assert json.loads(refused.value.read())["error"]["code"] == "payload_too_large"
        finally:
            served.stop()


class TestMetricsAcrossWorkerProcesses:
    def test_counters_sum_over_uvicorn_workers_in_multiprocess_mode(self, tmp_path: Path) -> None:
        """``uvicorn --workers 3`` with PROMETHEUS_MULTIPROC_DIR: whichever process answers a scrape, the
        accepted-events counter is the total over all of them, and it never goes back."""
        metrics_dir = tmp_path / "metrics"
        metrics_dir.mkdir()
        port = free_port()
        env = environment(f"sqlite:///{tmp_path / 't.db'}", TREND_WORKER_ENABLED="false",
                          PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "trend.api.app:create_app",
                                   "--workers", "3", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            assert answers(f"{url}/healthz", 60)
            sent, seen = 0, []
            for batch in range(30):
                with httpx.Client() as client:  # a new connection each time: spread over the workers
                    response = client.post(f"{url}/v1/events", json=[{"event": "search", "key": f"k{batch}"}] * 5)
                assert response.status_code == 202
                sent += 5
                with httpx.Client() as client:
                    scraped = client.get(f"{url}/metrics").text
                [value] = re.findall(r'^trend_events_total\{result="accepted"\} (\S+)$', scraped, re.MULTILINE)
                seen.append(float(value))
            assert seen == sorted(seen)
            assert seen[-1] == sent
            pids = {path.name.split("_")[-1] for path in metrics_dir.iterdir()}
            assert len(pids) >= 2, pids  # the work really was spread over processes
        finally:
            server.terminate()
            server.communicate(timeout=30)


class TestServeInProcesses:
    def test_the_jobs_run_once_and_metrics_sum_over_every_process(self, tmp_path: Path) -> None:
        """``trend serve --workers 3``: requests spread over three server processes, every counter of
        /metrics is the total whichever answers, and the scheduled jobs run in one process only."""
        url = f"sqlite:///{tmp_path / 't.db'}"
        served = Served(url, "--workers", "3", TREND_JOBS__AGG_1M__SECOND="*")
        try:
            sent, seen = 0, []
            minute = int(time.time()) - 120
            for batch in range(30):
                with httpx.Client() as client:  # a new connection each time: spread over the processes
                    response = client.post(f"{served.url}/v1/events",
                                           json=[{"event": "search", "key": f"k{batch}", "ts": minute}] * 5)
                    assert response.status_code == 202
                    sent += 5
                    scraped = client.get(f"{served.url}/metrics").text
                [value] = re.findall(r'^trend_events_total\{result="accepted"\} (\S+)$', scraped, re.MULTILINE)
                seen.append(float(value))
            assert seen[-1] == sent
            assert seen == sorted(seen)
            with Trend(database_url=url, worker_enabled=False) as trend:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not trend.status()[0].last_run:
                    time.sleep(0.2)
                time.sleep(2)  # a few more seconds of runs, every second
                with trend.db.read() as tx:
                    runners = {run.runner for run in all_runs(tx, "agg_1m")}
            assert len(runners) == 1, runners  # one process runs the jobs, not three
            assert runners == {f"{socket.gethostname()}:{served.process.pid}"}  # the supervisor
        finally:
            served.stop()


class TestWorkerMetrics:
    def _metric(self, url: str, line_start: str) -> float | None:
        try:
            text = httpx.get(url, timeout=2).text
        except httpx.TransportError:
            return None
        found = [line for line in text.splitlines() if line.startswith(line_start)]
        return float(found[0].rsplit(" ", 1)[1]) if found else None

    def test_a_dedicated_worker_shows_its_runs_on_its_metrics_port(self, tmp_path: Path) -> None:
        """The runs of ``trend worker`` reach Prometheus, so TrendJobRunsFailing covers that layout."""
        url = f"sqlite:///{tmp_path / 't.db'}"
        now = int(time.time() * 1000)
        with Trend(database_url=url, worker_enabled=False, clock=FakeClock(now)) as trend:
            trend.ingest([{"event": "search", "key": "k", "ts": (now - 3 * MINUTE_MS) / 1000}])
        port = free_port()
        env = environment(url, TREND_JOBS__AGG_1M__SECOND="*")
        worker = subprocess.Popen([*TREND, "worker", "--metrics-port", str(port)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        metrics = f"http://127.0.0.1:{port}/metrics"
        try:
            deadline = time.monotonic() + 30
            ran = None
            while time.monotonic() < deadline and not ran:
                ran = self._metric(metrics, 'trend_job_runs_total{outcome="ran",trend_job="agg_1m"}')
                time.sleep(0.2)
            assert ran is not None
            assert ran >= 1
            assert self._metric(metrics, "trend_database_up") == 1
            assert self._metric(metrics, 'trend_job_runs_total{outcome="failed",trend_job="agg_1m"}') == 0
        finally:
            worker.send_signal(signal.SIGTERM)
            _out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err.decode()

    def test_a_busy_metrics_port_stops_the_worker_naming_the_setting(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run([*TREND, "worker", "--metrics-port", str(port)], capture_output=True, text=True,
                                    env=environment(f"sqlite:///{tmp_path / 't.db'}"), timeout=60)
        assert result.returncode == 2
        assert "TREND_WORKER_METRICS_PORT" in result.stderr
        assert "Traceback" not in result.stderr
