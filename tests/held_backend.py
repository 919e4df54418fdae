"""Hold a real PostgreSQL backend at a chosen function with gdb, and let it go.

A commit window of Citus lies inside one backend's commit: after the local commit, in the
``XACT_EVENT_COMMIT`` callback, before ``COMMIT PREPARED`` reaches the workers. Nothing but stopping
that very backend there reproduces it. gdb attaches to the backend's process, puts a breakpoint on the
function, and lets the process run until it gets there; :meth:`GdbHold.release` removes the
breakpoint and detaches, and the backend goes on as if nothing had happened.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Citus calls it from its commit callback once the coordinator's own commit is visible, and it sends
# COMMIT PREPARED to every worker of the transaction. A transaction on one worker only commits there
# through the same function before the local commit (no window): the condition leaves those alone.
COMMIT_WINDOW = ("CoordinatedRemoteTransactionsCommit", "CurrentCoordinatedTransactionState == COORD_TRANS_PREPARED")


class GdbHold:
    def __init__(self, pid: int, function: str, condition: str) -> None:
        self.pid = pid
        if shutil.which("gdb") is None:
            pytest.fail("the commit-window tests hold a database backend with gdb (Debian: gdb)")
        self._gdb = subprocess.Popen(["gdb", "-q", "-nx", "-p", str(pid)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._output: list[str] = []
        self._seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        # The server's own signals go straight through: a crash restart's SIGQUIT must end the backend.
        self._send("set pagination off", "set confirm off",
                   "handle SIGQUIT SIGTERM SIGUSR1 SIGUSR2 nostop noprint pass",
                   f"break {function} if {condition}", "continue")
        self._wait_for("Continuing.", 60)  # the breakpoint is in and the backend runs again
        self.held = False

    def _read(self) -> None:
        assert self._gdb.stdout is not None
        for line in self._gdb.stdout:
            with self._seen:
                self._output.append(line)
                self._seen.notify_all()

    def _send(self, *commands: str) -> None:
        assert self._gdb.stdin is not None
        self._gdb.stdin.write("".join(f"{command}\n" for command in commands))
        self._gdb.stdin.flush()

    def _wait_for(self, text: str, timeout: float) -> bool:
        with self._seen:
            return self._seen.wait_for(lambda: any(text in line for line in self._output), timeout)

    def reached(self, timeout: float) -> bool:
        """Whether the backend has stopped at the function, waiting at most ``timeout`` seconds."""
        self.held = self.held or self._wait_for("Breakpoint 1,", timeout)
        return self.held

    def release(self) -> None:
        """Remove the breakpoint and let the backend go on; safe to call whether or not it was held."""
        if self._gdb.poll() is not None:
            return
        if not self.held:
            # Still running towards the breakpoint: interrupt it, so gdb takes commands again.
            self._gdb.send_signal(signal.SIGINT)
            time.sleep(0.5)
        self._send("delete", "detach", "quit")
        try:
            self._gdb.wait(30)
        except subprocess.TimeoutExpired:
            self._gdb.kill()
            raise
        finally:
            for pipe in (self._gdb.stdin, self._gdb.stdout):
                if pipe is not None:
                    pipe.close()


class Holds:
    """Several backends of one client (its pool's connections), any of which may reach the function."""

    def __init__(self, holds: list[GdbHold]) -> None:
        self._holds = holds

    def wait_until_held(self, timeout: float = 30) -> int:
        """Until one of the backends has stopped at the function; its process id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for hold in self._holds:
                if hold.reached(0.05):
                    return hold.pid
        raise AssertionError("no backend reached the breakpoint")


@contextmanager
def held_at(pids: list[int], where: tuple[str, str] = COMMIT_WINDOW) -> Iterator[Holds]:
    """gdb on each backend of ``pids``, with a breakpoint on ``where`` (a function and a condition);
    all released on the way out."""
    holds: list[GdbHold] = []
    try:
        for pid in pids:
            holds.append(GdbHold(pid, *where))
        yield Holds(holds)
    finally:
        for hold in holds:
            hold.release()
