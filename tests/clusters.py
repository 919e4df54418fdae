"""Private database servers for fault tests, so a test that stops a server never stops a shared one.

Each is made with the machine's own ``pg_createcluster`` (Debian's postgresql-common), on a port of
its own, and dropped afterwards. The Citus one comes from the project's ``scripts/citus-cluster.sh``
with a name and base port of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CITUS_CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "citus-cluster.sh"


def postgres_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]


def pg_ctl(cluster: str, action: str) -> None:
    """``pg_ctlcluster`` on one of this module's clusters: start, stop, restart."""
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), cluster, action],
                   check=True, capture_output=True, timeout=120)


def _require_tools() -> None:
    if shutil.which("pg_createcluster") is None:
        pytest.fail("fault tests make private PostgreSQL clusters and need pg_createcluster (postgresql-common)")


def _drop(cluster: str) -> None:
    subprocess.run(["pg_dropcluster", "--stop", postgres_version(), cluster], capture_output=True, timeout=120)


@contextmanager
def private_postgres(name: str, port: int) -> Iterator[str]:
    """A PostgreSQL cluster of the test's own, trust auth on loopback; yields the URL of its database."""
    _require_tools()
    _drop(name)  # a leftover of an interrupted run
    version = postgres_version()
    subprocess.run(["pg_createcluster", version, name, "-p", str(port), "--",
                    "--auth-host=trust", "--auth-local=trust"], check=True, capture_output=True, timeout=120)
    try:
        pg_ctl(name, "start")
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-qc", "CREATE DATABASE faults"],
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql://postgres@127.0.0.1:{port}/faults"
    finally:
        _drop(name)


@contextmanager
def private_postgres_when_tested(name: str, port: int) -> Iterator[str]:
    """:func:`private_postgres` where the PostgreSQL tests run (TREND_TEST_POSTGRES_URL), else a skip."""
    if os.environ.get("TREND_TEST_POSTGRES_URL") is None:
        pytest.skip("TREND_TEST_POSTGRES_URL is not set: the PostgreSQL tests need PostgreSQL installed")
    with private_postgres(name, port) as url:
        yield url


class PrivateCitus:
    """A Citus cluster of the tests' own: a coordinator on ``base_port`` and two workers on the next
    ports (PostgreSQL clusters ``<name>0..2``). Each test takes a database of its own in it."""

    def __init__(self, name: str, base_port: int) -> None:
        self.name = name
        self.base_port = base_port

    def _script(self, *arguments: str) -> str:
        environment = {**os.environ, "CITUS_NAME": self.name, "CITUS_BASE_PORT": str(self.base_port)}
        done = subprocess.run(["bash", str(CITUS_CLUSTER_SCRIPT), *arguments], check=True, capture_output=True,
                              text=True, timeout=300, env=environment)
        return done.stdout.strip()

    def database(self, name: str) -> str:
        """A database distributed over the cluster's nodes; the coordinator's URL, with 4 shards a table."""
        return f"{self._script('start', name)}?options=-ccitus.shard_count%3D4"

    def spare_node(self, number: int, database: str) -> int:
        """Node ``number`` up with Citus in ``database`` but not in the cluster; its port."""
        self._script("node", str(number), database)
        return self.base_port + number

    def node_cluster(self, number: int) -> str:
        """The PostgreSQL cluster of node ``number``, for :func:`pg_ctl`."""
        return f"{self.name}{number}"

    def drop(self) -> None:
        self._script("drop")


@contextmanager
def private_citus(name: str, base_port: int) -> Iterator[PrivateCitus]:
    """A :class:`PrivateCitus`, dropped afterwards (and first, if an interrupted run left it)."""
    _require_tools()
    if not CITUS_CLUSTER_SCRIPT.exists():
        pytest.fail(f"the Citus fault tests need {CITUS_CLUSTER_SCRIPT}")
    cluster = PrivateCitus(name, base_port)
    cluster.drop()
    try:
        yield cluster
    finally:
        cluster.drop()
