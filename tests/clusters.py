"""Private database servers for fault tests, so a test that stops a server never stops a shared one.

Each is made with the machine's own ``pg_createcluster`` (Debian's postgresql-common), on a port of
its own, and dropped afterwards. The Citus one comes from ``../shared/citus/cluster.sh`` with a name
and base port of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CITUS_CLUSTER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "citus" / "cluster.sh"


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
def private_citus(name: str, base_port: int) -> Iterator[str]:
    """A three-node Citus cluster of the test's own (coordinator on ``base_port``, workers on the next
    two, clusters ``<name>0..2``); yields the coordinator's URL."""
    _require_tools()
    if not CITUS_CLUSTER_SCRIPT.exists():
        pytest.fail(f"the Citus fault tests need {CITUS_CLUSTER_SCRIPT}")
    for node in range(3):
        _drop(f"{name}{node}")
    environment = {**os.environ, "CITUS_NAME": name, "CITUS_BASE_PORT": str(base_port)}
    try:
        subprocess.run(["bash", str(CITUS_CLUSTER_SCRIPT), "faults"], check=True, capture_output=True,
                       timeout=300, env=environment)
        yield f"postgresql://postgres@127.0.0.1:{base_port}/faults?options=-ccitus.shard_count%3D4"
    finally:
        for node in range(3):
            _drop(f"{name}{node}")
