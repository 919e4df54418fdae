"""Citus's two-phase-commit window, reproduced on real backends held with gdb.

A transaction that writes on the coordinator (a marker) and on the workers (events, or a level's
rows) commits on the coordinator first, then sends ``COMMIT PREPARED`` to the workers. In between,
the marker is visible and the rows are not. These tests stop a real trend backend right there, at
Citus's commit callback, and run the next level meanwhile.

Each test runs twice: with the commit barrier, where the run must wait and then count everything,
and with the barrier switched off, where the same moment must lose the rows for good. The second
is the proof that the test holds the real window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import CITUS_URL, T0, TrendFactory
from tests.held_backend import held_at
from tests.reference import assert_levels_equal, markers, stored_events
from trend.clock import FakeClock
from trend.model import LEVELS_BY_NAME, MINUTE_MS
from trend.service import Trend
from trend.storage.dialects import CitusDialect

pytestmark = pytest.mark.parametrize("backend", [pytest.param("citus", marks=pytest.mark.citus)], indirect=True)

# A closed minute, inside a closed 5m bucket.
MINUTE = T0 - 7 * MINUTE_MS
FIVE = MINUTE - MINUTE % LEVELS_BY_NAME["5m"].width
PROBES = 700  # keys on every shard, so the transaction is a two-phase commit over both workers


class Background(threading.Thread):
    """A call on a thread of its own, its result or error kept."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._call = call
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:  # reported by outcome() in the test's thread
            self.error = exc

    def outcome(self, timeout: float = 60) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the call never finished"
        if self.error is not None:
            raise self.error
        return self.result


def _named(url: str, name: str) -> str:
    """The URL with an application_name, so the test can find the Trend's backends."""
    return f"{url}&application_name={name}"


def _backends(name: str) -> list[tuple[int, str | None]]:
    with psycopg.connect(CITUS_URL or "", autocommit=True) as conn:
        found = conn.execute("SELECT pid, wait_event FROM pg_stat_activity WHERE application_name = %s",
                             (name,)).fetchall()
    return [(int(pid), wait) for pid, wait in found]


def _pool_of(name: str) -> list[int]:
    """The backends of a Trend's pool: one test thread used it, so they are few and all idle."""
    found = _backends(name)
    assert found
    assert all(wait == "ClientRead" for _, wait in found), found
    return [pid for pid, _ in found]


def _waits_on_the_barrier(name: str, run: Background, timeout: float = 15) -> bool:
    """True once a backend of ``name`` waits on an advisory lock; False if ``run`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.is_alive():
        if any(wait == "advisory" for _, wait in _backends(name)):
            return True
        time.sleep(0.05)
    return False


def _sum_of(trend: Trend, table: str, bucket: int) -> int:
    with trend.db.read() as tx:
        return int(tx.exec_driver_sql(f"SELECT coalesce(sum(count), 0) FROM {table} WHERE bucket = %s",
                                      (bucket,)).scalar() or 0)


@pytest.fixture(params=[True, False], ids=["barrier", "barrier-off"])
def barrier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if not request.param:
        monkeypatch.setattr(CitusDialect, "wait_for_committing_writers", staticmethod(lambda conn: None))
    return bool(request.param)


def _probes(start: int) -> list[dict[str, Any]]:
    return [{"event": "probe", "key": f"p{n}", "ts": (start + 1_000 + n) / 1000} for n in range(PROBES)]


class TestLiveCommitWindow:
    def test_a_run_while_an_ingest_is_between_its_local_commit_and_commit_prepared(
            self, make_trend: TrendFactory, database_url: str, clock: FakeClock, barrier: bool) -> None:
        """The ingest's marker is visible, its 700 events are not. With the barrier the run waits for the
        ingest's COMMIT PREPARED and counts all 701 events; without it, it writes the minute with one
        event and releases the marker, and nothing ever counts the 700."""
        held = make_trend(database_url=_named(database_url, "held-ingest"))
        runner = make_trend(database_url=_named(database_url, "runner"))
        held.ingest([{"event": "probe", "key": "seed", "ts": (MINUTE + 500) / 1000}])
        runner.rollup()
        with held_at(_pool_of("held-ingest")) as hold:
            ingest = Background(lambda: held.ingest(_probes(MINUTE)))
            hold.wait_until_held()
            # The window: the marker is committed on the coordinator, the events are not on the workers.
            assert ("1m", MINUTE) in markers(runner)
            assert len(stored_events(runner)) == 1
            run = Background(lambda: runner.rollup("1m"))
            waited = _waits_on_the_barrier("runner", run)
            if not barrier:
                run.outcome()  # finishes inside the window
        assert ingest.outcome().accepted == PROBES
        [report] = run.outcome()
        assert report.outcome == "ran"
        assert waited is barrier
        if barrier:
            assert _sum_of(runner, "agg_1m", MINUTE) == PROBES + 1  # no further run needed
            assert sum(item.count for item in runner.top("probe", window="15m", limit=1_000).items) == PROBES + 1
            runner.rollup()
            assert_levels_equal(runner, stored_events(runner), clock.now_ms())
        else:
            assert ("1m", MINUTE) not in markers(runner)
            runner.rollup()
            assert _sum_of(runner, "agg_1m", MINUTE) == 1  # lost for good: no marker is left to repair it
            assert len(stored_events(runner)) == PROBES + 1

    def test_a_5m_run_while_a_1m_run_is_between_its_local_commit_and_commit_prepared(
            self, make_trend: TrendFactory, database_url: str, clock: FakeClock, barrier: bool) -> None:
        """A 1m run commits its rows (workers) and its parent's marker (coordinator) as one two-phase
        commit too. Held in that window, the 5m run sees the parent's marker but not the new 1m rows."""
        held = make_trend(database_url=_named(database_url, "held-run"))
        runner = make_trend(database_url=_named(database_url, "runner"))
        held.ingest([{"event": "probe", "key": "seed", "ts": (MINUTE + 500) / 1000}])
        held.rollup()
        held.ingest(_probes(MINUTE))
        with held_at(_pool_of("held-run")) as hold:
            one_minute = Background(lambda: held.rollup("1m"))
            hold.wait_until_held()
            assert ("5m", FIVE) in markers(runner)
            assert _sum_of(runner, "agg_1m", MINUTE) == 1
            run = Background(lambda: runner.rollup("5m"))
            waited = _waits_on_the_barrier("runner", run)
            if not barrier:
                run.outcome()
        assert one_minute.outcome()[0].outcome == "ran"
        assert run.outcome()[0].outcome == "ran"
        assert waited is barrier
        assert _sum_of(runner, "agg_1m", MINUTE) == PROBES + 1
        if barrier:
            assert _sum_of(runner, "agg_5m", FIVE) == PROBES + 1
            runner.rollup()
            assert_levels_equal(runner, stored_events(runner), clock.now_ms())
        else:
            runner.rollup()
            assert _sum_of(runner, "agg_5m", FIVE) == 1  # the 5m bucket missed the 1m rows for good


def _workers() -> list[int]:
    with psycopg.connect(CITUS_URL or "", autocommit=True) as conn:
        return [int(port) for (port,) in conn.execute("SELECT nodeport FROM pg_dist_node WHERE groupid > 0")]


def _cut_from_workers(coordinator_pid: int) -> int:
    """Terminate the worker-side sessions of a coordinator backend: its COMMIT PREPARED then fails."""
    with psycopg.connect(CITUS_URL or "", autocommit=True) as conn:
        gpid = conn.execute("SELECT nodeid::bigint * 10000000000 + %s FROM pg_dist_node WHERE groupid = 0",
                            (coordinator_pid,)).fetchone()
    assert gpid is not None
    cut = 0
    for port in _workers():
        with psycopg.connect((CITUS_URL or "").replace(":5450/", f":{port}/"), autocommit=True) as worker:
            cut += len(worker.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE application_name = %s", (f"citus_internal gpid={gpid[0]}",)).fetchall())
    return cut


def _prepared_on_workers() -> int:
    with psycopg.connect(CITUS_URL or "", autocommit=True) as conn:
        rows = conn.execute("SELECT result FROM run_command_on_workers('SELECT count(*) FROM pg_prepared_xacts')")
        return sum(int(count) for (count,) in rows)


class RecoveryOff:
    """The run skips its recovery, and an open transaction that ran one holds Citus's recovery lock, so
    Citus's own background recovery cannot close the state either, until :meth:`end`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(CitusDialect, "recover_prepared", staticmethod(lambda conn: None))
        self._blocker = psycopg.connect(CITUS_URL or "")
        self._blocker.execute("SELECT recover_prepared_transactions()")

    def end(self) -> None:
        """Let recovery run again, and run it: the prepared events become visible."""
        if not self._blocker.closed:
            self._blocker.close()
            with psycopg.connect(CITUS_URL or "", autocommit=True) as conn:
                conn.execute("SELECT recover_prepared_transactions()")


@pytest.fixture(params=[True, False], ids=["recovery", "recovery-off"])
def recovery_off(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecoveryOff | None]:
    if request.param:
        yield None
        return
    switched = RecoveryOff(monkeypatch)
    try:
        yield switched
    finally:
        switched.end()


class TestFailedCommitPrepared:
    def test_a_run_after_an_ingest_whose_commit_prepared_failed(
            self, make_trend: TrendFactory, database_url: str, clock: FakeClock,
            recovery_off: RecoveryOff | None) -> None:
        """The ingest commits on the coordinator, then loses its workers before COMMIT PREPARED: it
        returns, its locks go (the barrier no longer waits), and its events stay prepared. The run's
        recovery commits them before the bucket is read; without it the minute loses them for good."""
        held = make_trend(database_url=_named(database_url, "held-ingest"))
        runner = make_trend(database_url=_named(database_url, "runner"))
        held.ingest([{"event": "probe", "key": "seed", "ts": (MINUTE + 500) / 1000}])
        runner.rollup()
        pool = _pool_of("held-ingest")
        with held_at(pool) as hold:
            ingest = Background(lambda: held.ingest(_probes(MINUTE)))
            hold.wait_until_held()
            assert sum(_cut_from_workers(pid) for pid in pool) >= 2
        assert ingest.outcome().accepted == PROBES  # committed on the coordinator: acknowledged
        assert _prepared_on_workers() >= 1
        assert len(stored_events(runner)) == 1
        [report] = runner.rollup("1m")
        assert report.outcome == "ran"
        if recovery_off is None:
            assert _sum_of(runner, "agg_1m", MINUTE) == PROBES + 1
            runner.rollup()
            assert_levels_equal(runner, stored_events(runner), clock.now_ms())
        else:
            assert ("1m", MINUTE) not in markers(runner)
            recovery_off.end()
            assert len(stored_events(runner)) == PROBES + 1  # the events arrive, after the run
            runner.rollup()
            assert _sum_of(runner, "agg_1m", MINUTE) == 1  # and the minute never counts them
