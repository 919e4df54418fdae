"""PostgreSQL crashes while a batch commits: the caller is told what the database did.

A client whose COMMIT loses its connection cannot know whether the transaction committed; the
database can. These tests hold the real backend of an ingest with gdb, just before and just after its
commit record is written to the log, and kill it there (the server then restarts, as after a crash).
A batch that committed must be reported stored, or a caller without event ids sends it again and
counts it twice; one that did not must be an error, so that it is sent again. The cluster is a
private one of this test's own (tests/clusters.py), never the shared server.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import psycopg
import pytest

from tests.clusters import PrivateCitus, private_postgres_when_tested
from tests.conftest import TrendFactory, worker_port
from tests.deadlines import scaled
from tests.held_backend import held_at
from tests.reference import stored_events
from tests.test_citus_commit_window import Background
from trend.clock import SystemClock
from trend.errors import DatabaseUnavailableError
from trend.service import Trend

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PORT = worker_port(5444)
PRIVATE = f"trendcommit{PORT}"
BATCH = 700
# XactLogCommitRecord writes the commit record; TransactionIdCommitTree marks the transaction
# committed once that record is flushed. A crash at the first loses the transaction, at the second not.
BEFORE_THE_RECORD, AFTER_THE_RECORD = "XactLogCommitRecord", "TransactionIdCommitTree"


@pytest.fixture
def private_url() -> Iterator[str]:
    with private_postgres_when_tested(PRIVATE, PORT) as url:
        yield url


def _backends(url: str, name: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchall()
    assert found
    return [int(pid) for (pid,) in found]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestCrashDuringCommit:
    @pytest.mark.parametrize(("where", "committed"), [(AFTER_THE_RECORD, True), (BEFORE_THE_RECORD, False)],
                             ids=["after-the-commit-record", "before-the-commit-record"])
    def test_the_caller_learns_whether_the_batch_was_stored(self, make_trend: TrendFactory, private_url: str,
                                                            where: str, committed: bool) -> None:
        name = f"lost-commit-{PORT}"
        trend = make_trend(database_url=f"{private_url}?application_name={name}")
        trend.ingest([{"event": "warm", "key": "w"}])  # tables made, the pool's connections open and idle
        # No event_id: a caller told "not stored" sends the batch again, and it must then be stored once.
        batch = [{"event": "search", "key": f"k{n}"} for n in range(BATCH)]
        with held_at(_backends(private_url, name), (where, "1")) as holds:
            ingest = Background(lambda: trend.ingest(batch))
            os.kill(holds.wait_until_held(scaled(30)), signal.SIGKILL)  # the server restarts, as after a crash
        if committed:
            assert ingest.outcome(scaled(60)).accepted == BATCH  # stored, and said so
        else:
            with pytest.raises(DatabaseUnavailableError):
                ingest.outcome(scaled(60))
            assert trend.ingest(batch).accepted == BATCH  # the caller sends it again
        assert sum(1 for event in stored_events(trend) if event["event"] == "search") == BATCH


def _coordinator(url: str) -> str:
    return url.split("?")[0]


@pytest.mark.citus
class TestCoordinatorCrashInTheTwoPhaseCommit:
    def test_a_batch_the_coordinator_committed_is_reported_stored(self, citus_cluster: PrivateCitus) -> None:
        """The coordinator crashes after its own commit, before COMMIT PREPARED reaches the workers:
        the batch is stored (Citus's recovery commits the workers' part), and the caller is told so."""
        name = "lost-commit-citus"
        url = f"{citus_cluster.database('lostcommit')}&application_name={name}"
        trend = Trend(database_url=url, worker_enabled=False, clock=SystemClock())
        try:
            trend.ingest([{"event": "warm", "key": "w"}])
            # Keys on every shard, so the batch commits in two phases over both workers.
            batch = [{"event": "search", "key": f"k{n}"} for n in range(BATCH)]
            with held_at(_backends(_coordinator(url), name)) as holds:
                ingest = Background(lambda: trend.ingest(batch))
                os.kill(holds.wait_until_held(scaled(30)), signal.SIGKILL)
            assert ingest.outcome(scaled(60)).accepted == BATCH
            with psycopg.connect(_coordinator(url), autocommit=True) as conn:
                conn.execute("SELECT recover_prepared_transactions()")  # what Citus does every minute by itself
            assert sum(1 for event in stored_events(trend) if event["event"] == "search") == BATCH
        finally:
            trend.close()
