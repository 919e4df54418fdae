"""Nothing a test started outlives the test run.

Each test process (each pytest-xdist worker, or pytest alone) looks for its own descendants when its
session ends, after every fixture's teardown: any it finds were left behind by a test. It kills them
and says which, and the run fails. Processes that a fixture tore down properly are gone by then;
processes of a test process that was itself killed die with it (tests/servers.dies_with_parent).
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

RUN_VARIABLE = "TREND_TEST_RUN"


def _parents() -> dict[int, int]:
    """pid → parent pid of every process on the machine."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ")".
        found[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return found


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:300]


def descendants(pid: int) -> list[int]:
    parents = _parents()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    waiting = list(children.get(pid, []))
    while waiting:
        child = waiting.pop()
        found.append(child)
        waiting.extend(children.get(child, []))
    return found


def reap() -> list[str]:
    """Kill this process's descendants; a line per process killed, naming it."""
    if not Path("/proc").is_dir():
        return []
    killed = []
    for pid in descendants(os.getpid()):
        command = _command(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(f"pid {pid}: {command}")
    return killed


def report_path(worker: str) -> Path:
    return Path(tempfile.gettempdir()) / f"trend-leftovers-{os.environ.get(RUN_VARIABLE, 'run')}-{worker}.txt"
