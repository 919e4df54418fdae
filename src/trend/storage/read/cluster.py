"""What a Citus cluster looks like from its coordinator: nodes, which answer, shards per node, and
prepared transactions still waiting for their COMMIT PREPARED.

Only the coordinator's metadata and one short command per worker are read, so this works while a
worker is down, which is when it matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trend.storage.shared.schema import fact_events, level_table
from trend.storage.shared.tx import Tx

# Citus names the prepared transactions it makes citus_<group>_<pid>_<number>_<n>.
_PREPARED = "SELECT count(*) FROM pg_prepared_xacts WHERE starts_with(gid, 'citus_') AND database = current_database()"


@dataclass(frozen=True)
class Node:
    host: str
    port: int
    role: str  # "coordinator" or "worker"
    reachable: bool
    shards: int  # of trend's tables
    prepared: int | None  # prepared transactions on the node; None when it cannot be asked
    error: str | None = None


@dataclass(frozen=True)
class Cluster:
    nodes: list[Node]
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(node.reachable for node in self.nodes)


def cluster_state(tx: Tx) -> Cluster:
    tables = [fact_events.name, *(level_table(level).name for level in tx.levels), "trend_event_ids"]
    shards: dict[int, int] = {int(group): int(count) for group, count in map(tuple, tx.exec_driver_sql(
        "SELECT p.groupid, count(*) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid) "
        "WHERE s.logicalrelid = ANY(ARRAY(SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)) GROUP BY p.groupid",
        (tables,)))}
    answers = {(str(host), int(port)): (bool(success), str(result)) for host, port, success, result in map(
        tuple, tx.exec_driver_sql(f"SELECT nodename, nodeport, success, result FROM run_command_on_workers("
                                  f"$${_PREPARED}$$)"))}
    local_prepared = int(tx.exec_driver_sql(_PREPARED).scalar() or 0)
    nodes = []
    for group, host, port in map(tuple, tx.exec_driver_sql(
            "SELECT groupid, nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' AND isactive "
            "ORDER BY groupid, nodeport")):
        on_shards = int(shards.get(group, 0))
        if group == 0:
            nodes.append(Node(host, int(port), "coordinator", True, on_shards, local_prepared))
            continue
        success, result = answers.get((host, int(port)), (False, "no answer"))
        nodes.append(Node(host, int(port), "worker", success, on_shards, int(result) if success else None,
                          None if success else result.splitlines()[0]))
    return Cluster(nodes, _warnings(nodes))


def _warnings(nodes: list[Node]) -> list[str]:
    found = [f"worker {n.host}:{n.port} is unreachable: {n.error}" for n in nodes if not n.reachable]
    if not any(n.role == "worker" for n in nodes):
        found.append("the cluster has no worker nodes: every shard is on the coordinator, so Citus adds its "
                     "costs and spreads nothing (SELECT citus_add_node(host, port) on the coordinator)")
    return found
