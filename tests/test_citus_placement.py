"""Where trend may keep its tables on PostgreSQL and Citus, and what a hung committer may cost.

* A process pointed at a Citus worker node stops at start-up: its markers and run records would live
  on the worker, where the coordinator's runners never see them.
* A process whose search_path reaches trend's tables in a schema other than its first stops at
  start-up: its statements would use those tables under the commit barrier of the first schema,
  which that deployment's runners never wait for.
* A run queued at the commit barrier behind a committer held in its two-phase commit gives up after
  TREND_CITUS_BARRIER_TIMEOUT, and writers queued behind the run get through: a hung committer costs
  a retry, not a frozen cluster.
"""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.conftest import CITUS_URL, POSTGRES_URL, T0, TrendFactory
from tests.deadlines import scaled
from tests.held_backend import held_at
from tests.reference import markers, stored_events
from tests.servers import environment
from tests.test_citus_commit_window import PROBES, Background, _named, _pool_of, _probes, _waits_on_the_barrier
from trend.errors import ConfigError, DatabaseUnavailableError
from trend.model import MINUTE_MS
from trend.service import Trend

MINUTE = T0 - 7 * MINUTE_MS


def _worker_url(coordinator: str) -> str:
    """The first worker of the local cluster (scripts/citus-cluster.sh: the coordinator's port + 1)."""
    parts = urlsplit(coordinator)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{parts.hostname}:{(parts.port or 5432) + 1}"))


@pytest.mark.citus
class TestWorkerNodes:
    @pytest.mark.parametrize("backend", [pytest.param("citus", marks=pytest.mark.citus)], indirect=True)
    def test_a_process_pointed_at_a_worker_node_stops_naming_the_url(self, backend: str) -> None:
        """Before: accepted; events went to the distributed tables, markers to the worker, and the
        coordinator never rolled them up."""
        if CITUS_URL is None:
            pytest.skip("TREND_TEST_CITUS_URL is not set: these tests need a server")
        url = _worker_url(CITUS_URL)
        with pytest.raises(ConfigError) as refused, Trend(database_url=url, worker_enabled=False) as trend:
            trend.ingest([{"event": "search", "key": "k"}])
        assert refused.value.setting == "TREND_DATABASE_URL"
        assert "worker node" in str(refused.value)
        done = subprocess.run([sys.executable, "-m", "trend", "status", "--json"], capture_output=True, text=True,
                              env=environment(url), timeout=scaled(60))
        assert done.returncode == 2
        assert "TREND_DATABASE_URL" in done.stdout
        with psycopg.connect(url, autocommit=True) as conn:  # nothing of trend's was made there
            assert conn.execute("SELECT to_regclass('public.rollup_dirty')").fetchone() == (None,)


def _schema(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")


def _with_path(server: str, path: str) -> str:
    return f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{path.replace(',', '%2C')}"


class TestSearchPath:
    @pytest.mark.parametrize("server", [pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("citus", marks=pytest.mark.citus)])
    def test_tables_of_another_schema_on_the_path_stop_start_up(self, server: str) -> None:
        """Before: a process with search_path=fresh,deployed used deployed's tables under fresh's barrier;
        an ingest held in the commit window while deployed's runner ran lost its 700 events for good."""
        url = POSTGRES_URL if server == "postgres" else CITUS_URL
        if url is None:
            pytest.skip(f"TREND_TEST_{server.upper()}_URL is not set: these tests need a server")
        deployed, fresh = f"deployed_{server}", f"fresh_{server}"
        _schema(url, deployed)
        _schema(url, fresh)
        try:
            with Trend(database_url=_with_path(url, f"{deployed},public"), worker_enabled=False) as there:
                there.ingest([{"event": "search", "key": "k"}])
            with pytest.raises(ConfigError) as refused, Trend(
                    database_url=_with_path(url, f"{fresh},{deployed},public"), worker_enabled=False) as mixed:
                mixed.ingest([{"event": "search", "key": "k"}])
            assert refused.value.setting == "TREND_DATABASE_URL"
            assert deployed in str(refused.value)
            # A misspelt first schema: PostgreSQL passes over it, and trend would have used the next.
            with pytest.raises(ConfigError) as misspelt, Trend(
                    database_url=_with_path(url, f"{fresh}_typo,{deployed},public"), worker_enabled=False) as typo:
                typo.ingest([{"event": "search", "key": "k"}])
            assert f"{fresh}_typo" in str(misspelt.value)
            with psycopg.connect(url, autocommit=True) as conn:
                assert conn.execute(f"SELECT count(*) FROM {deployed}.fact_events").fetchone() == (1,)
                assert conn.execute(f"SELECT to_regclass('{fresh}.fact_events')").fetchone() == (None,)
        finally:
            for name in (deployed, fresh):
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.parametrize("backend", [pytest.param("citus", marks=pytest.mark.citus)], indirect=True)
class TestBoundedBarrier:
    def test_a_hung_committer_delays_other_writers_by_at_most_the_timeout(self, make_trend: TrendFactory,
                                                                          database_url: str) -> None:
        """An ingest held between its local commit and COMMIT PREPARED (a committer that hangs); a run
        queues for the barrier behind it, and a third process's ingest queues behind the run. Before:
        that ingest waited for as long as the hang lasted (20 s and more)."""
        held = make_trend(database_url=_named(database_url, "hung-committer"), citus_barrier_timeout="1s")
        runner = make_trend(database_url=_named(database_url, "queued-runner"), citus_barrier_timeout="1s")
        other = make_trend(database_url=_named(database_url, "other-writer"), citus_barrier_timeout="1s")
        held.ingest([{"event": "probe", "key": "seed", "ts": (MINUTE + 500) / 1000}])
        runner.rollup()
        other.ingest([{"event": "probe", "key": "warm", "ts": (MINUTE + 600) / 1000}])
        with held_at(_pool_of("hung-committer")) as hold:
            ingest = Background(lambda: held.ingest(_probes(MINUTE)))
            hold.wait_until_held()
            run = Background(lambda: runner.rollup("1m"))
            assert _waits_on_the_barrier("queued-runner", run)
            began = time.monotonic()
            try:
                other.ingest([{"event": "probe", "key": "later", "ts": (MINUTE + 700) / 1000}])
                stored = True
            except DatabaseUnavailableError:  # timed out queued behind the run: a 503, to be retried
                stored = False
            waited = time.monotonic() - began
            [report] = run.outcome(scaled(30))
            # The run gave up at the barrier, within its timeout, and left its buckets marked.
            assert report.outcome == "failed"
            assert ("1m", MINUTE) in markers(runner)
        assert ingest.outcome().accepted == PROBES
        assert waited <= 1.0 + scaled(1.5), waited
        if not stored:
            other.ingest([{"event": "probe", "key": "later", "ts": (MINUTE + 700) / 1000}])
        runner.rollup()
        assert len(stored_events(runner)) == PROBES + 3
        assert sum(item.count for item in runner.top("probe", window="15m", limit=1_000).items) == PROBES + 3
        assert runner.db.dialect.barrier.timeouts >= 1
