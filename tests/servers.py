"""Real ``trend`` processes for tests: a server on a free loopback port, or a worker.

Every process here starts in a process group of its own, which its stop and kill end as a whole
(``trend serve --workers N`` has children), and dies with the test process that started it
(:func:`dies_with_parent`). Its output goes to a file, never to a pipe nobody reads, and a server
that does not come up fails the test with what it printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from tests.deadlines import scaled

EVERY_SECOND = {
    "TREND_JOBS__AGG_1M__SECOND": "*", "TREND_JOBS__AGG_5M__MINUTE": "*", "TREND_JOBS__AGG_5M__SECOND": "*",
    "TREND_JOBS__AGG_1H__MINUTE": "*", "TREND_JOBS__AGG_1H__SECOND": "*", "TREND_JOBS__RETENTION__ENABLED": "false",
}
# How long a server may take to answer after start-up on an idle machine (scaled on a busy one).
START_S = 30.0
_SETPRIV = shutil.which("setpriv")


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREND_") or k == "TREND_TEST_POSTGRES_URL"}
    return {**env, "TREND_DATABASE_URL": database_url, "TREND_LOG_LEVEL": "WARNING", **extra}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dies_with_parent(command: Sequence[str]) -> list[str]:
    """``command`` run so that the kernel kills it when the thread that started it ends (Linux's
    parent-death signal, set by util-linux's ``setpriv``): a test process killed or ended by a
    timeout leaves no server behind. Only for processes started on the main thread."""
    if _SETPRIV is None or threading.current_thread() is not threading.main_thread():
        return list(command)
    return [_SETPRIV, "--pdeathsig", "SIGKILL", "--", *command]


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


class Process:
    """A ``trend`` command (or any) in a process group of its own, its output kept in a file."""

    def __init__(self, command: Sequence[str], env: dict[str, str], **popen: Any) -> None:
        self.output_path = Path(tempfile.mkstemp(prefix="trend-test-process-", suffix=".log")[1])
        self._output: IO[bytes] = self.output_path.open("wb")
        self.process = subprocess.Popen(dies_with_parent(command), env=env, stdout=self._output,
                                        stderr=subprocess.STDOUT, start_new_session=True, **popen)

    def printed(self, last: int = 4000) -> str:
        """The end of what the process wrote to stdout and stderr."""
        self._output.flush()
        return self.output_path.read_bytes().decode(errors="replace")[-last:]

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the whole group, and wait for the process."""
        self.signal_group(signal.SIGKILL)
        self.process.wait(timeout=scaled(20))
        self._close()

    def stop(self, seconds: float = 30) -> str:
        """SIGTERM, a graceful end within ``seconds`` (scaled), else SIGKILL; what it printed."""
        self.process.terminate()
        try:
            self.process.wait(timeout=scaled(seconds))
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.process.wait(timeout=scaled(20))
        self.signal_group(signal.SIGKILL)  # children that outlived it
        printed = self.printed(last=1 << 20)
        self._close()
        return printed

    def _close(self) -> None:
        self._output.close()
        self.output_path.unlink(missing_ok=True)


class Served(Process):
    """``trend serve`` in a subprocess; ``url`` once it answers /healthz. A server that does not
    answer within its deadline is killed, and the test fails with the deadline and what it printed."""

    def __init__(self, database_url: str, *args: str, **env: str) -> None:
        # TREND_PORT, as for trend serve itself: a port to start on again after a kill.
        self.port = int(env.pop("TREND_PORT", 0)) or free_port()
        self.database_url = database_url
        self.stdout = ""
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([sys.executable, "-m", "trend", "serve", "--port", str(self.port), *args],
                         environment(database_url, **env))
        wait_until_up(self, f"{self.url}/healthz", "trend serve")

    def stop(self, seconds: float = 30) -> str:
        """SIGTERM, and what the server wrote (kept in ``stdout`` too)."""
        self.stdout = super().stop(seconds)
        return self.stdout


def wait_until_up(process: Process, url: str, what: str) -> None:
    """Wait for ``url`` to answer 200; on a timeout, or any interruption (a test's own timeout
    included), kill the process, and fail naming the deadline and what it printed."""
    deadline = scaled(START_S)
    try:
        if answers(url, deadline):
            return
        if process.process.poll() is not None:
            problem = f"{what} exited with status {process.process.returncode}"
        else:
            problem = f"{what} did not answer {url} within {deadline:.0f} s"
    except BaseException:
        process.kill()
        raise
    printed = process.printed()
    process.kill()
    raise RuntimeError(f"{problem}; it printed:\n{printed}")


class Hosted(Process):
    """``examples/embedded_app.py``, the README's host app, under uvicorn: trend mounted at /trend."""

    def __init__(self, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([sys.executable, "-m", "uvicorn", "examples.embedded_app:app", "--port", str(self.port)],
                         environment(database_url, **env), cwd=os.path.dirname(os.path.dirname(__file__)))
        wait_until_up(self, f"{self.url}/trend/healthz", "the example host app")
