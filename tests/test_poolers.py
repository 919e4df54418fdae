"""trend behind a real pgbouncer (Debian's) in transaction mode, the pooling that spreads one
client's transactions over server connections: with TREND_POSTGRES_PREPARED_STATEMENTS=false nothing
fails, however often the same statements run (psycopg would prepare them on the server after the
fifth, and the next transaction may meet another connection)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.conftest import POSTGRES_URL, T0, worker_port
from tests.deadlines import scaled
from tests.reference import stored_events
from tests.servers import Process
from trend.clock import FakeClock
from trend.service import Trend

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pooled(tmp_path: Path) -> Iterator[str]:
    """A URL through pgbouncer in transaction mode, two server connections, to a schema of the test's own."""
    if POSTGRES_URL is None:
        pytest.skip("TREND_TEST_POSTGRES_URL is not set: these tests need a server")
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail("the pooler test needs pgbouncer (Debian: pgbouncer)")
    server = urlsplit(POSTGRES_URL)
    role = f"pooled_{os.getpid()}"  # search_path cannot pass through pgbouncer: the role's default gives it
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        _drop(conn, role)
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"ALTER ROLE {role} SET search_path = {role}, public")
    port = worker_port(6440)
    folder = tmp_path / "pgbouncer"
    folder.mkdir()
    (folder / "users.txt").write_text(f'"{role}" ""\n')
    (folder / "pgbouncer.ini").write_text(f"""[databases]
{server.path.lstrip('/')} = host={server.hostname} port={server.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
auth_type = trust
auth_file = {folder / 'users.txt'}
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
unix_socket_dir =
""")
    os.chmod(tmp_path, 0o755)
    for path in (folder, folder / "users.txt", folder / "pgbouncer.ini"):
        shutil.chown(path, "postgres")
    # pgbouncer will not run as root; as the database's own user it may.
    bouncer = Process([binary, "-u", "postgres", str(folder / "pgbouncer.ini")], dict(os.environ))
    url = f"postgresql://{role}@127.0.0.1:{port}{server.path}"
    try:
        deadline = time.monotonic() + scaled(20)
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2):
                    break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, bouncer.printed()
                time.sleep(0.1)
        yield url
    finally:
        bouncer.stop()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            _drop(conn, role)


def _drop(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        conn.execute(f"DROP SCHEMA IF EXISTS {role} CASCADE")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


class TestTransactionPooling:
    @pytest.mark.parametrize("prepared", [False, True], ids=["prepared-off", "prepared-on"])
    def test_without_prepared_statements_many_threads_share_two_server_connections(self, pooled: str,
                                                                                   prepared: bool) -> None:
        """With them (psycopg's default), the same work fails as pgbouncer's users saw it:
        ``prepared statement "_pg3_0" already exists``. That is the proof this pooler is in the way."""
        clock = FakeClock(T0)
        with Trend(database_url=pooled, clock=clock, worker_enabled=False, postgres_prepared_statements=prepared,
                   hll="off") as trend:
            errors: list[BaseException] = []

            def work(n: int) -> None:
                try:
                    for batch in range(25):
                        trend.ingest([{"event": "search", "key": f"k{n}-{batch % 5}", "event_id": f"{n}-{batch}"}])
                        trend.top("search", window="1h")
                        trend.rollup("1m")
                except BaseException as exc:  # reported below, with the others
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(scaled(120))
            if prepared:
                assert any("prepared statement" in str(error) for error in errors), errors
                return
            assert errors == []
            assert len(stored_events(trend)) == 100
            assert sum(item.count for item in trend.top("search", window="1h", limit=100).items) == 100
