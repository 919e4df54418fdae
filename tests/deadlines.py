"""Deadlines that scale with the machine: a wait a test sets for an idle machine, stretched by how
slow this one is right now, so a busy machine makes tests slower, never red.

The factor is measured once per test process: a fixed piece of Python work timed against what it
takes on an idle machine of the kind CI runs on, and the load average per core; the larger wins,
between 1 and :data:`MOST`. ``TREND_TEST_SLOWDOWN`` sets it instead.
"""

from __future__ import annotations

import os
import statistics
import time
from functools import cache

# The fixed work below takes this long on an idle 2-core CI machine (the median of several runs).
IDLE_WORK_S = 0.013
MOST = 10.0


def _work() -> float:
    began = time.perf_counter()
    total = 0
    for n in range(300_000):
        total += n * n
    return time.perf_counter() - began


@cache
def slowdown() -> float:
    """How many times slower than idle this machine is now (1 to :data:`MOST`)."""
    given = os.environ.get("TREND_TEST_SLOWDOWN")
    if given:
        return max(1.0, float(given))
    measured = statistics.median(_work() for _ in range(5)) / IDLE_WORK_S
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return min(MOST, max(1.0, measured, per_core))


def scaled(seconds: float) -> float:
    """``seconds`` on an idle machine, as a deadline on this one."""
    return seconds * slowdown()
