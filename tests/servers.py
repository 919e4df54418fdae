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


class Served:
    """``trend serve`` in a subprocess; ``url`` once it answers /healthz."""

    def __init__(self, database_url: str, *args: str, **env: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trend", "serve", "--port", str(self.port), *args],
            env=environment(database_url, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout = ""
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
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
