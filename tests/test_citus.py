"""trend on Citus: distributed tables, idempotent ingest across shards, and the mode setting.

The protocol tests (ground truth, rollups, concurrency, retention) run on Citus too, through
``PROTOCOL_BACKENDS``; these check what only a distributed database has.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from tests.conftest import T0, TrendFactory
from tests.reference import assert_levels_equal, stored_events
from trend.clock import FakeClock
from trend.errors import ConfigError
from trend.model import LEVELS, MINUTE_MS
from trend.rollup import writes
from trend.service import Trend
from trend.storage.shared.markers import release
from trend.storage.write.rollups import recompute

on_citus = pytest.mark.parametrize("backend", [pytest.param("citus", marks=pytest.mark.citus)], indirect=True)


def _rows_per_node(trend: Trend, table: str) -> dict[int, int]:
    with trend.db.read() as tx:
        rows = tx.exec_driver_sql(
            f"SELECT s.nodeport, sum(r.result::bigint) FROM run_command_on_shards('{table}', "
            "'SELECT count(*) FROM %%s') r JOIN citus_shards s ON s.shardid = r.shardid GROUP BY s.nodeport").all()
    return {int(port): int(count) for port, count in map(tuple, rows)}


@on_citus
class TestDistribution:
    def test_events_and_rollups_are_spread_over_both_workers(self, trend: Trend, clock: FakeClock) -> None:
        """Sharded by key and colocated: every table holds rows on each worker, and the rollups are exact."""
        events = [{"event": "search", "key": f"k{n % 200}", "user_id": f"u{n % 50}",
                   "ts": (T0 - MINUTE_MS * (2 + n % 30)) / 1000} for n in range(3_000)]
        trend.ingest(events)
        trend.rollup()
        for table in ("fact_events", "agg_1m", "agg_5m"):
            per_node = _rows_per_node(trend, table)
            assert len(per_node) >= 2, (table, per_node)  # more than one worker holds rows
            assert all(count > 0 for count in per_node.values()), (table, per_node)
        with trend.db.read() as tx:
            local = {name for (name,) in tx.exec_driver_sql(
                "SELECT logicalrelid::text FROM pg_dist_partition")}
        assert {"fact_events", "agg_1m", "agg_5m", "agg_1h"} <= local
        assert not {"rollup_dirty", "job_runs"} & local  # the protocol's tables stay local
        assert_levels_equal(trend, stored_events(trend), clock.now_ms())


def _plans_of(trend: Trend, action: Callable[[], object], wanted: Callable[[str], bool]) -> list[str]:
    """EXPLAIN of every statement ``action`` runs that ``wanted`` picks, with its own parameters."""
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if wanted(statement):
            statements.append((statement, parameters))

    event.listen(trend.db.engine, "before_cursor_execute", capture)
    try:
        action()
    finally:
        event.remove(trend.db.engine, "before_cursor_execute", capture)
    plans = []
    with trend.db.read() as tx:
        for statement, parameters in statements:
            plans.append("\n".join(line for (line,) in tx.exec_driver_sql("EXPLAIN " + statement, parameters)))
    return plans


def _pushed_down(plan: str) -> bool:
    """The whole statement runs per shard on the workers: Citus's router/adaptive executor with
    tasks, no pulling to the coordinator, no repartitioning, no aggregation left for the coordinator."""
    above = plan.partition("->  Task")[0]
    return ("Custom Scan (Citus Adaptive)" in above and "Task Count: 4" in above and "Aggregate" not in above
            and "pull to coordinator" not in plan and "repartition" not in plan.lower())


@on_citus
class TestPushdown:
    def test_the_recompute_and_top_run_on_the_workers(self, trend: Trend, monkeypatch: pytest.MonkeyPatch) -> None:
        """Keys are the distribution column of every table and all are colocated, so a bucket's
        INSERT … SELECT … GROUP BY (one bucket's or several buckets' at once) and top's GROUP BY key (by
        count and by users) run inside each shard."""
        # Batches grow while a transaction stays under its target time: a busy machine must not stop that.
        monkeypatch.setattr("trend.rollup.runner._BATCH_TARGET_S", 60.0)
        trend.ingest([{"event": "search", "key": f"k{n % 50}", "user_id": f"u{n % 7}",
                       "ts": (T0 - MINUTE_MS * (2 + n % 30)) / 1000} for n in range(2_000)])
        recomputes = _plans_of(trend, lambda: trend.rollup("1m"), lambda sql: sql.startswith("INSERT INTO agg_1m"))
        assert 1 < len(recomputes) < 30  # the catch-up shares transactions among buckets, from the second on
        assert all(_pushed_down(plan) and "Insert on agg_1m_" in plan for plan in recomputes)
        for by in ("count", "users"):
            tops = _plans_of(trend, lambda by=by: trend.top("search", window="1h", by=by),  # type: ignore[misc]
                             lambda sql: "GROUP BY" in sql and "ORDER BY" in sql)
            assert tops
            assert all(_pushed_down(plan) for plan in tops), tops


@on_citus
class TestIdempotentIngest:
    def test_a_repeated_event_id_is_a_duplicate_whatever_shard_its_key_lands_on(self, trend: Trend) -> None:
        """The same event_id sent again with other keys (so other shards) counts once."""
        first = trend.ingest([{"event": "search", "key": f"key-{n}", "event_id": f"id-{n}",
                               "ts": (T0 - 120_000) / 1000} for n in range(100)])
        again = trend.ingest([{"event": "search", "key": f"other-{n}", "event_id": f"id-{n}",
                               "ts": (T0 - 120_000) / 1000} for n in range(100)])
        assert (first.accepted, again.accepted, again.duplicates) == (100, 0, 100)
        assert len(stored_events(trend)) == 100

    def test_concurrent_repeats_store_each_id_once(self, trend: Trend) -> None:
        results: list[int] = []

        def send(prefix: str) -> None:
            result = trend.ingest([{"event": "search", "key": f"{prefix}-{n}", "event_id": f"id-{n}",
                                    "ts": (T0 - 120_000) / 1000} for n in range(300)])
            results.append(result.accepted)

        threads = [threading.Thread(target=send, args=(prefix,)) for prefix in ("a", "b", "c")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(results) == 300
        assert len(stored_events(trend)) == 300


class TestMode:
    @pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
    def test_on_refuses_a_database_without_citus(self, make_trend: TrendFactory) -> None:
        with pytest.raises(ConfigError, match="TREND_CITUS"):
            make_trend(citus="on").db.ensure_schema()

    @on_citus
    def test_off_keeps_plain_tables_on_a_citus_database(self, make_trend: TrendFactory) -> None:
        trend = make_trend(citus="off")
        trend.ingest([{"event": "search", "key": "k", "ts": (T0 - 120_000) / 1000}])
        with trend.db.read() as tx:
            distributed = tx.exec_driver_sql(
                "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'fact_events'::regclass").scalar()
        assert distributed == 0


    @on_citus
    def test_off_refuses_a_database_whose_tables_are_distributed(self, make_trend: TrendFactory) -> None:
        """Plain-table code on distributed tables would not keep event_ids unique: trend refuses to start."""
        make_trend().ingest([{"event": "search", "key": "k", "event_id": "id-1", "ts": (T0 - 120_000) / 1000}])
        with pytest.raises(ConfigError, match=r"TREND_CITUS.*distributed"):
            make_trend(citus="off").ingest([{"event": "search", "key": "j", "event_id": "id-1",
                                             "ts": (T0 - 120_000) / 1000}])

    @on_citus
    def test_a_healthy_cluster_shows_its_nodes_and_shards(self, trend: Trend) -> None:
        cluster = trend.cluster()
        assert cluster is not None
        assert cluster.healthy
        assert cluster.warnings == []
        workers = [node for node in cluster.nodes if node.role == "worker"]
        assert len(workers) == 2
        # 4 shards for each of fact_events, three levels and the event ids, spread over the two workers.
        assert sum(node.shards for node in cluster.nodes) == 4 * 5
        assert all(node.shards > 0 and node.prepared == 0 for node in workers)

    @pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
    def test_no_cluster_where_nothing_is_distributed(self, trend: Trend) -> None:
        assert trend.cluster() is None

    @on_citus
    def test_a_plain_database_on_a_citus_server_is_distributed_with_its_rows(self, make_trend: TrendFactory,
                                                                            clock: FakeClock) -> None:
        """Moving onto Citus: plain tables first (as on the old server), then a start with TREND_CITUS=on
        distributes them; every row moves, ids already stored stay duplicates, and the rollups stay exact."""
        plain = make_trend(citus="off")
        plain.ingest([{"event": "search", "key": f"k{n % 30}", "event_id": f"id-{n}", "user_id": f"u{n % 9}",
                       "ts": (T0 - MINUTE_MS * (2 + n % 40)) / 1000} for n in range(600)])
        plain.rollup("1m")  # some levels rolled up, the rest still marked
        plain.close()
        moved = make_trend(citus="on")
        assert moved.ingest([{"event": "search", "key": "other", "event_id": "id-7",
                              "ts": (T0 - 120_000) / 1000}]).duplicates == 1
        assert moved.db.dialect.name == "citus"
        per_node = _rows_per_node(moved, "fact_events")
        assert len(per_node) == 2
        assert sum(per_node.values()) == 600
        moved.rollup()
        assert_levels_equal(moved, stored_events(moved), clock.now_ms())


@on_citus
class TestRetentionOfIds:
    def test_retention_forgets_event_ids_with_their_raw_events(self, make_trend: TrendFactory,
                                                               clock: FakeClock) -> None:
        """The id table would grow for ever otherwise; ids of events still kept stay, so repeats of them
        are still duplicates."""
        trend = make_trend(accepted_lateness="1h", retention={"raw": "2h", "1m": "2h", "5m": "3h", "1h": "30d"})
        trend.ingest([{"event": "search", "key": f"k{n}", "event_id": f"old-{n}", "ts": (T0 - 50 * MINUTE_MS) / 1000}
                      for n in range(20)])
        clock.advance(3 * 60 * MINUTE_MS)
        trend.ingest([{"event": "search", "key": f"k{n}", "event_id": f"new-{n}", "ts": (clock.now_ms() - 120_000)
                       / 1000} for n in range(20)])
        clock.advance(10 * MINUTE_MS)
        trend.rollup()
        trend.run_job("retention")
        with trend.db.read() as tx:
            ids = {i for (i,) in tx.exec_driver_sql("SELECT event_id FROM trend_event_ids")}
        assert ids == {f"new-{n}" for n in range(20)}
        again = trend.ingest([{"event": "search", "key": "k0", "event_id": "new-0", "ts": (clock.now_ms() - 60_000)
                               / 1000}])
        assert again.duplicates == 1


@on_citus
class TestWhatAReadGuarantees:
    def test_a_read_counts_every_acknowledged_event_and_nothing_unsent_while_ingest_and_runs_go_on(
            self, trend: Trend, clock: FakeClock) -> None:
        """docs/queries.md, "Reads on Citus": with batches spread over every shard and runs releasing
        markers meanwhile, each read counts at least every event acknowledged before it began and at most
        those acknowledged by its end plus the batch in flight; once all is quiet it is exact."""
        start = T0 - 30 * MINUTE_MS
        acknowledged = [0]
        lock = threading.Lock()
        stop = threading.Event()

        def ingest() -> None:
            batch = 0
            while not stop.is_set():
                trend.ingest([{"event": "search", "key": f"k{n % 40}", "user_id": f"u{n}",
                               "ts": (start + (batch * 7 + n) % (28 * MINUTE_MS)) / 1000} for n in range(100)])
                with lock:
                    acknowledged[0] += 100
                batch += 1

        def roll() -> None:
            while not stop.is_set():
                trend.rollup()

        workers = [threading.Thread(target=ingest), threading.Thread(target=roll)]
        for worker in workers:
            worker.start()
        seen = []
        try:
            for _ in range(30):
                with lock:
                    low = acknowledged[0]
                top = trend.top("search", window="1h", limit=100)
                with lock:
                    high = acknowledged[0] + 100
                seen.append((low, sum(item.count for item in top.items), high))
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)
        assert all(low <= total <= high for low, total, high in seen), seen
        trend.rollup()
        assert sum(item.count for item in trend.top("search", window="1h", limit=100).items) == acknowledged[0]
        assert_levels_equal(trend, stored_events(trend), clock.now_ms())

    def test_a_marker_is_released_only_once_its_rows_are_visible_to_every_other_reader(
            self, trend: Trend, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a distributed snapshot, a read that finds a bucket clean reads its rows at once. So the
        marker goes only after the rows' transaction has committed on every worker: at that moment,
        another connection already sees all of them."""
        minute = T0 - 3 * MINUTE_MS
        trend.ingest([{"event": "search", "key": f"k{n}", "ts": (minute + n) / 1000} for n in range(40)])
        seen_at_release: list[int] = []

        def release_seen(tx: Any, level: str, bucket: int, version: int) -> bool:
            with trend.db.read() as other:
                seen_at_release.append(int(other.exec_driver_sql(
                    "SELECT count(*) FROM agg_1m WHERE bucket = %s", (bucket,)).scalar() or 0))
            return release(tx, level, bucket, version)

        monkeypatch.setattr(writes, "release", release_seen)
        trend.rollup("1m")
        assert seen_at_release == [40]

    def test_a_marker_made_again_before_the_release_is_not_released(
            self, trend: Trend, make_trend: TrendFactory, monkeypatch: pytest.MonkeyPatch) -> None:
        """Between the commit of a bucket's rows and the release of its marker, another runner finishes
        the same bucket and a late event makes its marker again, at version 1: the version this run
        read. The release must not take that marker for its own, or the late event is never rolled up."""
        minute = T0 - 3 * MINUTE_MS
        trend.ingest([{"event": "search", "key": f"k{n}", "ts": (minute + n) / 1000} for n in range(10)])
        other = make_trend()
        with trend.db.read() as tx:
            assert tx.exec_driver_sql("SELECT version FROM rollup_dirty WHERE level = '1m'").scalar_one() == 1

        def release_after_another(tx: Any, level: str, bucket: int, version: int) -> bool:
            if level == "1m" and bucket == minute:
                with other.db.write() as elsewhere:
                    current = elsewhere.exec_driver_sql(
                        "SELECT version FROM rollup_dirty WHERE level = '1m'").scalar_one()
                    recompute(elsewhere, LEVELS[0], minute)
                    assert release(elsewhere, "1m", minute, current)
                other.ingest([{"event": "search", "key": "late", "ts": (minute + 30_000) / 1000}])
                with other.db.read() as check:
                    assert check.exec_driver_sql(
                        "SELECT version FROM rollup_dirty WHERE level = '1m'").scalar_one() == 1
            return release(tx, level, bucket, version)

        monkeypatch.setattr(writes, "release", release_after_another)
        trend.rollup("1m")
        monkeypatch.undo()
        trend.rollup()
        assert_levels_equal(trend, stored_events(trend), trend.clock.now_ms())
        assert any(event["key"] == "late" for event in stored_events(trend))
