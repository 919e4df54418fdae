"""A node joins a Citus cluster and shards move to it while trend ingests (HTTP-style batches and a
file) and runs, on a private cluster. Shard moves are logical replication: the nodes run with
wal_level=logical (scripts/citus-cluster.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.clusters import PrivateCitus
from tests.reference import assert_levels_equal, settle, stored_events
from tests.servers import environment
from tests.traffic import Traffic
from trend.model import MINUTE_MS
from trend.service import Trend

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.citus]
LINES = 100_000


def _rebalance(coordinator: str, port: int, started: Callable[[], None]) -> str:
    """Add the node, move shards to it in the background, and wait for the move to end; its state."""
    with psycopg.connect(coordinator, autocommit=True) as conn:
        conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (port,))
        conn.execute("SELECT citus_rebalance_start()")
        started()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            row = conn.execute("SELECT state FROM citus_rebalance_status()").fetchone()
            if row is not None and row[0] in ("finished", "failed", "cancelled"):
                return str(row[0])
            time.sleep(0.5)
    return "still running after 240 s"


def _shards_on(trend: Trend, port: int) -> int:
    cluster = trend.cluster()
    assert cluster is not None
    return next(node.shards for node in cluster.nodes if node.port == port)


def _file(path: Path, now_ms: int, lines: int) -> Counter[tuple[str, int]]:
    events = [(f"f{n % 300}", (now_ms - MINUTE_MS * (2 + n % 5)) / 1000 + n / 1e6) for n in range(lines)]
    path.write_text("".join(json.dumps({"event": "search", "key": key, "ts": ts}) + "\n" for key, ts in events))
    return Counter((key, round(ts * 1000)) for key, ts in events)


class TestRebalance:
    def test_a_node_added_and_shards_moved_while_trend_ingests_and_runs(self, citus_cluster: PrivateCitus,
                                                                         tmp_path: Path) -> None:
        url = citus_cluster.database("rebalance")
        new_port = citus_cluster.spare_node(3, "rebalance")
        trend = Trend(database_url=url, worker_enabled=False)
        try:
            trend.db.ensure_schema()
            now = trend.clock.now_ms()
            sent_by_file = _file(tmp_path / "events.jsonl", now, LINES)
            traffic = Traffic(url, ingesters=2, runners=2, pause_s=0.02)
            try:
                time.sleep(1)
                by_file = subprocess.Popen([sys.executable, "-m", "trend", "ingest", "--json",
                                            str(tmp_path / "events.jsonl")], env=environment(url), text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                overlapped: list[bool] = []
                state = _rebalance(url.partition("?")[0], new_port, lambda: overlapped.append(by_file.poll() is None))
                out, err = by_file.communicate(timeout=240)
            finally:
                traffic.stop()
            assert state == "finished"
            assert overlapped == [True]  # the file was still being stored when the move began
            assert not traffic.crashed, traffic.crashed
            assert by_file.returncode == 0, (out, err)  # no chunk of the file was lost to the move
            assert json.loads(out)["accepted"] == LINES
            # The move happened under real traffic.
            assert traffic.ingests > 10
            assert traffic.runs > 10
            assert _shards_on(trend, new_port) > 0
            end = trend.clock.now_ms()
            settle(trend, end)
            stored = stored_events(trend)
            from_file = Counter((e["key"], e["ts"]) for e in stored if e["key"].startswith("f"))
            assert from_file == sent_by_file
            assert Counter(e["event_id"] for e in stored if e["event_id"]) == Counter(
                e["event_id"] for e in traffic.acknowledged)
            assert_levels_equal(trend, stored, end)
        finally:
            trend.close()
