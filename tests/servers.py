"""Real ``trend`` processes for tests: a server on a free loopback port, or a worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

EVERY_SECOND = {
    "TREND_JOBS__AGG_1M__SECOND": "*", "TREND_JOBS__AGG_5M__MINUTE": "*", "TREND_JOBS__AGG_5M__SECOND": "*",
    "TREND_JOBS__AGG_1H__MINUTE": "*", "TREND_JOBS__AGG_1H__SECOND": "*", "TREND_JOBS__RETENTION__ENABLED": "false",
}


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREND_") or k == "TREND_TEST_POSTGRES_URL"}
    return {**env, "TREND_DATABASE_URL": database_url, "TREND_LOG_LEVEL": "WARNING", **extra}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str, seconds: float) -> bool:
    """Whether ``url`` answers 200 within ``seconds`` (a server starting up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            time.sleep(0.05)
    return False


class Served:
    """``trend serve`` in a subprocess; ``url`` once it answers /healthz."""

    def __init__(self, database_url: str, *args: str, **env: str) -> None:
        # TREND_PORT, as for trend serve itself: a port to start on again after a kill.
        self.port = int(env.pop("TREND_PORT", 0)) or free_port()
        self.database_url = database_url
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trend", "serve", "--port", str(self.port), *args],
            env=environment(database_url, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout = ""
        self.url = f"http://127.0.0.1:{self.port}"
        if not answers(f"{self.url}/healthz", 30):
            self.kill()
            raise RuntimeError("trend serve did not start")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=20)

    def stop(self) -> str:
        """SIGTERM, and what the server wrote to stderr (its stdout is kept in ``stdout``)."""
        self.process.terminate()
        out, err = self.process.communicate(timeout=30)
        self.stdout = out.decode()
        return err.decode()


class Hosted:
    """``examples/embedded_app.py``, the README's host app, under uvicorn: trend mounted at /trend."""

    def __init__(self, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.embedded_app:app", "--port", str(self.port)],
            env=environment(database_url, **env), cwd=os.path.dirname(os.path.dirname(__file__)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        if not answers(f"{self.url}/trend/healthz", 30):
            self.stop()
            raise RuntimeError("the example host app did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)
