"""Where trend's log lines go and what they look like: the seed format or JSON in trend's own
processes, the host's logging when embedded, every time in TREND_TIMEZONE with its zone named."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import Served, environment
from trend.clock import FakeClock
from trend.model import MINUTE_MS
from trend.service import Trend

pytestmark = pytest.mark.slow  # real trend processes: make test, not make check

SEOUL = {"TREND_TIMEZONE": "Asia/Seoul", "TREND_LOG_LEVEL": "INFO"}


def _backlog(url: str) -> None:
    now = int(time.time() * 1000)
    with Trend(database_url=url, worker_enabled=False, clock=FakeClock(now)) as trend:
        trend.ingest([{"event": "search", "key": "k", "ts": (now - 3 * MINUTE_MS) / 1000}])


def _rollup(url: str, **env: str) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "trend", "rollup", "--level", "1m"],
                            env=environment(url, **env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stderr.strip().splitlines()


class TestOwnProcesses:
    def test_seed_lines_name_one_zone_for_the_line_and_its_buckets(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 't.db'}"
        _backlog(url)
        [line] = [line for line in _rollup(url, **SEOUL) if "Starting 1m aggregation for bucket" in line]
        assert re.fullmatch(r"\[트렌드\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d KST \| INFO \| Starting 1m aggregation for "
                            r"bucket: \d{4}-\d\d-\d\d \d\d:\d\d:00 KST \(1 events\)", line), line

    def test_json_lines_carry_time_zone_level_process_and_message(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 't.db'}"
        _backlog(url)
        lines = [json.loads(line) for line in _rollup(url, TREND_LOG_FORMAT="json", **SEOUL)]
        started = next(line for line in lines if line["message"].startswith("Starting 1m aggregation for bucket"))
        assert started["time"].endswith("+09:00")
        assert started["zone"] == "Asia/Seoul"
        assert started["level"] == "INFO"
        assert started["logger"] == "trend.rollup"
        assert re.fullmatch(r"[^:]+:\d+", started["process"])
        assert started["message"].endswith(":00 KST (1 events)")

    def test_serve_logs_requests_only_when_asked(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 't.db'}"
        quiet = Served(url, "--no-worker")
        httpx.get(f"{quiet.url}/healthz")
        assert "GET /healthz" not in quiet.stop()
        loud = Served(url, "--no-worker", "--access-log")
        httpx.get(f"{loud.url}/healthz")
        loud.stop()
        assert '"GET /healthz HTTP/1.1" 200' in loud.stdout  # uvicorn's access log
        assert re.search(r"^\[트렌드\] .* \| INFO \| .*\"GET /healthz HTTP/1.1\" 200", loud.stdout, re.M)

    def test_with_json_logs_uvicorns_own_lines_are_json_too(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 't.db'}"
        server = Served(url, "--no-worker", "--access-log", TREND_LOG_FORMAT="json", TREND_LOG_LEVEL="INFO",
                        TREND_TIMEZONE="Asia/Seoul")
        httpx.get(f"{server.url}/v1/top", params={"event": "search"})
        printed = server.stop()
        lines = [json.loads(line) for line in printed.splitlines() if line.strip()]
        [access] = [line for line in lines if line["logger"] == "uvicorn.access" and "/v1/top" in line["message"]]
        assert (access["method"], access["path"], access["status"]) == ("GET", "/v1/top?event=search", 200)
        assert access["time"].endswith("+09:00")
        assert {"uvicorn.error", "trend.serve"} <= {line["logger"] for line in lines}  # start-up and trend's own


class TestEmbedded:
    SCRIPT = textwrap.dedent("""
        import logging, sys, time
        from trend.clock import FakeClock
        from trend.service import Trend
        if sys.argv[2] == "host-logging":
            logging.basicConfig(level=logging.INFO, format="HOST %(name)s %(message)s")
        now = int(time.time() * 1000)
        trend = Trend(database_url=sys.argv[1], worker_enabled=False, clock=FakeClock(now))
        trend.ingest([{"event": "search", "key": "k", "ts": (now - 180_000) / 1000}])
        trend.rollup("1m")
        trend.close()
    """)

    def _embedded(self, url: str, mode: str) -> list[str]:
        result = subprocess.run([sys.executable, "-c", self.SCRIPT, url, mode], env=environment(url, **SEOUL),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [line for line in result.stderr.splitlines() if "Starting 1m aggregation for bucket" in line]

    def test_an_app_with_logging_of_its_own_gets_the_lines_in_its_format(self, tmp_path: Path) -> None:
        lines = self._embedded(f"sqlite:///{tmp_path / 't.db'}", "host-logging")
        assert len(lines) == 1
        assert lines[0].startswith("HOST trend.rollup Starting 1m aggregation for bucket: ")

    def test_an_app_without_logging_still_sees_the_lines(self, tmp_path: Path) -> None:
        lines = self._embedded(f"sqlite:///{tmp_path / 't.db'}", "no-logging")
        assert len(lines) == 1
        assert lines[0].startswith("[트렌드] ")
