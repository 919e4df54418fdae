"""One private Citus cluster for every Citus fault test of a session: each takes a database of its own
in it, and a test that stops a node starts it again before it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clusters import PrivateCitus, private_citus
from tests.conftest import CITUS_URL, worker_port


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[PrivateCitus]:
    if CITUS_URL is None:
        pytest.skip("TREND_TEST_CITUS_URL is not set: the Citus tests need Citus installed")
    port = worker_port(5470)
    with private_citus(f"trendfault{port}_", port) as cluster:
        yield cluster
