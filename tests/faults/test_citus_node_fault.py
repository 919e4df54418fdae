"""A Citus worker node stops during runs and during ingest, on a private three-node cluster.

Runs fail cleanly and name the node; every batch is either acknowledged and stored or refused and
absent; once the node is back, everything catches up and equals the truth.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.clusters import PrivateCitus, pg_ctl
from tests.reference import assert_levels_equal, stored_events
from tests.servers import environment
from trend.api.app import create_app
from trend.clock import SystemClock
from trend.errors import StorageError
from trend.model import MINUTE_MS
from trend.service import Trend

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.citus]


@pytest.fixture
def cluster_url(citus_cluster: PrivateCitus) -> str:
    return citus_cluster.database("nodefault")


def _identity(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["key"], event["ts"], event["user_id"])


def _batch(now: int, batch: int) -> list[dict[str, Any]]:
    # Forty keys, so every batch writes to shards on both workers.
    return [{"event": "search", "key": f"k{n % 40}", "user_id": f"b{batch}-{n % 7}",
             "ts": (now - MINUTE_MS * (2 + n % 20) - batch) / 1000} for n in range(200)]


class TestWorkerNodeStops:
    def test_runs_fail_naming_the_node_batches_are_all_or_nothing_and_all_heals(
            self, citus_cluster: PrivateCitus, cluster_url: str) -> None:
        trend = Trend(database_url=cluster_url, worker_enabled=False, worker_yield_ratio=0.0, clock=SystemClock())
        try:
            self._play(trend, citus_cluster.node_cluster(1), citus_cluster.base_port + 1)
        finally:
            trend.close()

    @staticmethod
    def _play(trend: Trend, stopped_worker: str, stopped_port: int) -> None:
        now = trend.clock.now_ms()
        acknowledged: list[dict[str, Any]] = []
        for batch in range(30):  # a backlog of minutes for the runs to be in the middle of
            events = _batch(now, batch)
            trend.ingest(events)
            acknowledged += events
        reports: list[Any] = []
        running = threading.Thread(target=lambda: reports.extend(trend.rollup()))
        running.start()
        pg_ctl(stopped_worker, "stop")
        try:
            running.join(120)
            refused = 0
            for batch in range(30, 36):
                events = _batch(now, batch)
                try:
                    trend.ingest(events)
                    acknowledged += events
                except StorageError:
                    refused += 1
            assert refused > 0  # every batch touches the stopped node
            _assert_the_node_is_reported_down(trend, stopped_port)
            during = trend.rollup()
            # Runs started while the node is down fail and name it; the run it was stopped under may
            # instead report the node's shutdown, as any database-unavailable error.
            failed = [r for r in during if r.outcome == "failed"]
            assert failed, [r.outcome for r in during]
            assert all(f"127.0.0.1:{stopped_port}" in (r.error or "") for r in failed), [r.error for r in failed]
            assert reports  # the interrupted run reported, whatever its outcome
        finally:
            pg_ctl(stopped_worker, "start")
        reports = trend.rollup()  # the catch-up, on its own
        assert all(r.outcome in ("ran", "skipped_no_data") for r in reports), [(r.level, r.error) for r in reports]
        stored = stored_events(trend)
        assert Counter(_identity(e) for e in stored) == Counter(
            (e["key"], round(e["ts"] * 1000), e["user_id"]) for e in acknowledged)
        assert_levels_equal(trend, stored, now - now % MINUTE_MS)


def _assert_the_node_is_reported_down(trend: Trend, port: int) -> None:
    """/healthz and ``trend status`` name the node that does not answer, and say the rest."""
    cluster = trend.cluster()
    assert cluster is not None
    assert not cluster.healthy
    by_port = {node.port: node for node in cluster.nodes}
    assert not by_port[port].reachable
    assert by_port[port].error
    assert all(node.reachable for node in cluster.nodes if node.port != port)
    assert all(node.shards > 0 for node in cluster.nodes if node.role == "worker")
    with TestClient(create_app(trend=trend)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["cluster"]["healthy"] is False
    assert any(f":{port} is unreachable" in warning for warning in response.json()["cluster"]["warnings"])
    status = subprocess.run([sys.executable, "-m", "trend", "status", "--json"], capture_output=True, text=True,
                            env=environment(trend.settings.database_url), timeout=60)
    assert status.returncode == 1, status.stderr
    nodes = json.loads(status.stdout)["cluster"]["nodes"]
    assert [node["port"] for node in nodes if not node["reachable"]] == [port]


class TestANodeRestarts:
    def test_the_pool_survives_a_worker_restart(self, citus_cluster: PrivateCitus) -> None:
        """Each pooled session keeps a connection to every worker it used. Once the worker has restarted,
        those are dead: the first statement on each fails, and trend renews the pool and tries again,
        so ingest, reads and runs all go on without an error."""
        url = citus_cluster.database("noderestart")
        trend = Trend(database_url=url, worker_enabled=False, worker_yield_ratio=0.0, clock=SystemClock())
        try:
            now = trend.clock.now_ms()
            sent: list[dict[str, Any]] = []

            def use(batch: int) -> None:
                events = _batch(now, batch)
                trend.ingest(events)
                sent.extend(events)
                trend.top("search", window="1h")

            busy = [threading.Thread(target=use, args=(batch,)) for batch in range(5)]
            for thread in busy:
                thread.start()
            for thread in busy:
                thread.join(60)
            with trend.db.read() as tx:  # several sessions, each with its own connections to the workers
                sessions = tx.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'noderestart' "
                                              "AND backend_type = 'client backend'").scalar()
            assert int(sessions or 0) >= 3
            pg_ctl(citus_cluster.node_cluster(1), "restart")
            for batch in range(5, 15):
                use(batch)
            reports = trend.rollup()
            assert {r.outcome for r in reports} <= {"ran", "skipped_no_data"}, [(r.outcome, r.error) for r in reports]
            stored = stored_events(trend)
            assert Counter(_identity(e) for e in stored) == Counter(
                (e["key"], round(e["ts"] * 1000), e["user_id"]) for e in sent)
            assert_levels_equal(trend, stored, now - now % MINUTE_MS)
        finally:
            trend.close()


class TestNoWorkerNodes:
    def test_start_up_and_status_warn_that_every_shard_is_on_the_coordinator(
            self, citus_cluster: PrivateCitus, caplog: pytest.LogCaptureFixture) -> None:
        """A database with the extension but no worker nodes works, slowly: trend says so."""
        citus_cluster.spare_node(0, "noworkers")  # the coordinator's node, with citus, and no workers added
        url = f"postgresql://postgres@127.0.0.1:{citus_cluster.base_port}/noworkers"
        trend = Trend(database_url=url, worker_enabled=False, clock=SystemClock())
        try:
            with caplog.at_level(logging.WARNING, logger="trend"):
                trend.db.ensure_schema()
            assert any("no worker nodes" in record.getMessage() for record in caplog.records)
            cluster = trend.cluster()
            assert cluster is not None
            assert [node.role for node in cluster.nodes] == ["coordinator"]
            assert any("no worker nodes" in warning for warning in cluster.warnings)
        finally:
            trend.close()
