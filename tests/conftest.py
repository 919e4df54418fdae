"""One suite, every backend: SQLite always, PostgreSQL when TREND_TEST_POSTGRES_URL is set, and the
protocol tests on Citus when TREND_TEST_CITUS_URL is set and on MariaDB when TREND_TEST_MARIADB_URL is
(``PROTOCOL_BACKENDS``).

When a variable is set and its server cannot be reached, those tests fail; they never skip.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from sqlalchemy.engine import make_url

from tests import reaper
from trend.clock import FakeClock
from trend.logging import LOGGER_NAME
from trend.model import from_datetime
from trend.service import Trend

POSTGRES_URL = os.environ.get("TREND_TEST_POSTGRES_URL")
CITUS_URL = os.environ.get("TREND_TEST_CITUS_URL")
MARIADB_URL = os.environ.get("TREND_TEST_MARIADB_URL")
# 2025-11-13 06:51:00 UTC, the bucket in the seed's log lines.
T0 = 1_763_016_660_000
assert from_datetime(__import__("datetime").datetime.fromisoformat("2025-11-13T06:51:00+00:00")) == T0

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
# The rollup protocol's tests also run on a three-node Citus cluster, and on MariaDB.
MARIADB = pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb)
PROTOCOL_BACKENDS = [*BACKENDS, pytest.param("citus", id="citus", marks=pytest.mark.citus), MARIADB]
# PostgreSQL without postgresql-hll (TREND_HLL=off): users sketches folded in trend's process.
PYTHON_SKETCHES = pytest.param("postgres-python-sketches", id="postgres-python-sketches", marks=pytest.mark.postgres)
SKETCH_BACKENDS = [*BACKENDS, PYTHON_SKETCHES, MARIADB]
SERVERS = {"postgres": ("TREND_TEST_POSTGRES_URL", POSTGRES_URL), "citus": ("TREND_TEST_CITUS_URL", CITUS_URL),
           "postgres-python-sketches": ("TREND_TEST_POSTGRES_URL", POSTGRES_URL),
           "mariadb": ("TREND_TEST_MARIADB_URL", MARIADB_URL)}


def _schema_url(server: str, schema: str) -> str:
    separator = "&" if "?" in server else "?"
    # public too: extensions such as hll live there. Few shards keep a test's tables small on Citus.
    return f"{server}{separator}options=-csearch_path%3D{schema},public%20-ccitus.shard_count%3D4"


class DatabaseFactory:
    """Hands out fresh, empty databases of one backend and removes them afterwards."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self._schemas: list[str] = []

    def new_url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp_path / f'trend-{uuid.uuid4().hex[:8]}.db'}"
        variable, server = SERVERS[self.backend]
        if server is None:
            pytest.skip(f"{variable} is not set: these tests need a server")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        if self.backend == "mariadb":
            return self._new_mariadb_database(variable, server, schema)
        try:
            with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
        except psycopg.OperationalError as exc:
            pytest.fail(f"{variable} is set but the server cannot be reached: {exc}")
        self._schemas.append(schema)
        return _schema_url(server, schema)

    def _new_mariadb_database(self, variable: str, server: str, name: str) -> str:
        """A database of its own on the server (MariaDB's schemas are databases)."""
        try:
            with _mariadb(server) as conn, conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        except pymysql.err.OperationalError as exc:
            pytest.fail(f"{variable} is set but the server cannot be reached: {exc}")
        self._schemas.append(name)
        return str(make_url(server).set(database=name))

    def cleanup(self) -> None:
        if not self._schemas:
            return
        server = SERVERS[self.backend][1]
        assert server is not None
        if self.backend == "mariadb":
            with _mariadb(server) as server_conn, server_conn.cursor() as cursor:
                for name in self._schemas:
                    cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            return
        with psycopg.connect(server, autocommit=True) as conn:
            for schema in self._schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _mariadb(server: str) -> pymysql.connections.Connection[Any]:
    url = make_url(server)
    return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", connect_timeout=5, autocommit=True)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def databases(backend: str, tmp_path: Path) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(backend, tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture
def database_url(databases: DatabaseFactory) -> str:
    return databases.new_url()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


TrendFactory = Callable[..., Trend]


@pytest.fixture
def make_trend(database_url: str, clock: FakeClock, backend: str) -> Iterator[TrendFactory]:
    """``make_trend(**settings)`` → a Trend on this test's database and fake clock, closed afterwards."""
    made: list[Trend] = []

    def make(**overrides: Any) -> Trend:
        overrides.setdefault("database_url", database_url)
        if backend == "postgres-python-sketches":
            overrides.setdefault("hll", "off")
        overrides.setdefault("worker_enabled", False)
        overrides.setdefault("worker_yield_ratio", 0.0)  # the pause only spaces work out; tests want it fast
        trend = Trend(clock=overrides.pop("clock", clock), **overrides)
        made.append(trend)
        return trend

    yield make
    for trend in made:
        trend.close()


@pytest.fixture
def trend(make_trend: TrendFactory) -> Trend:
    return make_trend()


@pytest.fixture
def trend_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the ``trend`` logger's lines, once each."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    previous, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # caplog's handler also sits on the root logger: each line once
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(previous)
    logger.propagate = propagate


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure trend explicitly; stray TREND_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("TREND_") and not name.startswith("TREND_TEST_"):
            monkeypatch.delenv(name)


# Under pytest-xdist (``make test`` runs two workers), tests that change a shared server's state (the
# Citus cluster's: a held backend, Citus's recovery lock held on purpose, prepared-transaction counts)
# take turns across the workers. Private servers get ports of their worker's own (worker_port).
_ONE_AT_A_TIME = ("citus",)
_TURNS = Path(tempfile.gettempdir()) / f"trend-tests-{os.getuid()}-servers.lock"


def worker_port(base: int) -> int:
    """A port for a private server of this pytest-xdist worker: ``base`` on the first, 20 more per worker."""
    return base + 20 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


@pytest.fixture(autouse=True)
def _server_tests_take_turns(request: pytest.FixtureRequest) -> Iterator[None]:
    if not any(request.node.get_closest_marker(name) for name in _ONE_AT_A_TIME):
        yield
        return
    with open(_TURNS, "w") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        yield


def pytest_configure(config: pytest.Config) -> None:
    # One id for the run, which pytest-xdist's workers inherit: their reports of leftover processes meet.
    os.environ.setdefault(reaper.RUN_VARIABLE, uuid.uuid4().hex)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture's teardown: kill what the tests left running, name it, and fail the run."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if session.config.pluginmanager.hasplugin("dsession"):  # pytest-xdist's controller: its workers reaped
        found = sorted(reaper.report_path("*").parent.glob(reaper.report_path("*").name))
        killed = [line for path in found for line in path.read_text().splitlines()]
        for path in found:
            path.unlink(missing_ok=True)
    else:
        killed = reaper.reap()
        if worker is not None:
            if killed:
                reaper.report_path(worker).write_text("\n".join(killed) + "\n")
            return
    if killed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", f"{len(killed)} process(es) left running by the tests, killed", red=True)
            for line in killed:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The skips as one line per reason with its count, instead of a line per test (``-ra``): without
    a server's variable, hundreds of tests skip for the same few reasons."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        _path, _line, reason = report.longrepr if isinstance(report.longrepr, tuple) else ("", 0, str(report.longrepr))
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.write_sep("-", "skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{count:5d}  {reason}")
