"""The package's imports form no cycle, and only the dialects know which backend they talk to.

``lint-imports`` checks the layers (pyproject.toml), but an import inside a function, or one only for
type checking, can close a cycle the layers do not see."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import grimp

import trend
from trend.storage.dialects import DIALECTS


class TestImports:
    def test_no_module_imports_itself_through_others(self) -> None:
        """Every import counts: at module level, inside functions, and under TYPE_CHECKING."""
        graph = grimp.build_graph("trend")
        cycles = {tuple(chain) for module in graph.modules
                  for imported in graph.find_modules_directly_imported_by(module)
                  if (chain := graph.find_shortest_chain(importer=imported, imported=module))}
        assert cycles == set(), sorted(cycles)


# What a process that reads by count from SQLite never needs: each loads when first used (tens of ms
# apiece at start-up, which every CLI call and every new replica pays).
LOADED_WHEN_NEEDED = ["psycopg", "pymysql", "sqlalchemy.dialects.mysql", "sqlalchemy.dialects.postgresql",
                      "apscheduler", "httpx", "datasketches", "numpy", "fastapi", "uvicorn"]
# What a process that only reads never needs: the metrics registry is made when something is counted.
LOADED_WHEN_COUNTED = ["prometheus_client"]


class TestStartUp:
    def _loaded(self, database: Path, does: str, modules: list[str]) -> list[str]:
        script = (f"import json, sys; from trend import Trend; "
                  f"trend = Trend(database_url='sqlite:///{database}', worker_enabled=False); {does}; "
                  f"print(json.dumps([name for name in {modules!r} if name in sys.modules]))")
        loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
        return list(json.loads(loaded.stdout))

    def test_a_read_by_count_on_sqlite_loads_no_other_backend_nor_the_worker_nor_http(self, tmp_path: Path) -> None:
        does = "trend.ingest([{'event': 'search', 'key': 'k'}]); trend.rollup(); trend.series('search', interval='1h')"
        assert self._loaded(tmp_path / "t.db", does, LOADED_WHEN_NEEDED) == []

    def test_a_process_that_only_reads_makes_no_metrics_registry(self, tmp_path: Path) -> None:
        written = "trend.ingest([{'event': 'search', 'key': 'k'}]); trend.rollup()"
        assert self._loaded(tmp_path / "t.db", written, LOADED_WHEN_COUNTED) == LOADED_WHEN_COUNTED
        read = "trend.series('search', interval='1h'); trend.top('search', window='1h', by='count')"
        assert self._loaded(tmp_path / "t.db", read, LOADED_WHEN_COUNTED) == []


    def test_a_command_line_top_loads_only_its_own_command(self, tmp_path: Path) -> None:
        """A real ``trend top`` process: no other command's module, no server, no metrics registry."""
        Trend = trend.Trend  # noqa: N806
        with Trend(database_url=f"sqlite:///{tmp_path / 't.db'}", worker_enabled=False) as made:
            made.ingest([{"event": "search", "key": "k"}])
        others = ["trend.cli.serving", "trend.cli.demo", "trend.cli.ingesting", "trend.cli.jobs", "trend.cli.alerts",
                  "trend.worker.scheduler", "trend.alerts.service", "trend.rollup.service", "trend.ingest",
                  "fastapi", "uvicorn", *LOADED_WHEN_COUNTED]
        script = ("import atexit, json, sys; "
                  f"atexit.register(lambda: print(json.dumps([m for m in {others!r} if m in sys.modules]), "
                  "file=sys.stderr)); from trend.__main__ import main; main()")
        ran = subprocess.run([sys.executable, "-c", script, "top", "--event", "search", "--json"],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "TREND_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"})
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["items"][0]["key"] == "k"
        assert json.loads(ran.stderr.strip().splitlines()[-1]) == []


# Drivers of every backend trend has, or could be given: only a dialect may import one.
DRIVERS = {"psycopg", "psycopg2", "psycopg_pool", "asyncpg", "sqlite3", "pysqlite2", "pymysql", "MySQLdb", "mariadb"}
PACKAGE = Path(trend.__file__).parent
DIALECT_FOLDER = PACKAGE / "storage" / "dialects"


def _backend_words() -> set[str]:
    """Every name a backend goes by: trend's, SQLAlchemy's, and its URL schemes'."""
    words = set()
    for dialect in DIALECTS.values():
        words |= {dialect.name, *dialect.SQLALCHEMY_NAMES, *(scheme.split("+")[0] for scheme in dialect.URL_SCHEMES)}
    return words | {"mysql", "mariadb"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings: prose may name a backend, code may not."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def backend_mentions(source: str) -> list[str]:
    """What a module's code says of particular backends: drivers imported, backend names as strings
    (``"sqlite"``, ``"postgresql+psycopg"``) and SQLAlchemy's backend options (``sqlite_where=``)."""
    words = _backend_words()
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: imports {name}" for name in names
                      if name.split(".")[0] in DRIVERS or name.startswith("sqlalchemy.dialects")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.lower()
            if any(text in (word, f"{word}:") or text.startswith((f"{word}_", f"{word}+", f"{word}:/"))
                   for word in words):
                found.append(f"line {node.lineno}: the string {node.value!r}")
        elif isinstance(node, ast.keyword) and any(str(node.arg).startswith(f"{word}_") for word in words):
            found.append(f"line {node.value.lineno}: the option {node.arg}=")
    return sorted(found)


class TestBackendSeam:
    """Every difference between backends lives in trend/storage/dialects: nothing else imports a
    driver or names a backend in its code (the settings' own names, such as TREND_SQLITE_BUSY_TIMEOUT_MS,
    are the user's words, and each dialect reads its own)."""

    def test_no_module_outside_the_dialects_names_a_backend(self) -> None:
        found = {str(path.relative_to(PACKAGE)): mentions for path in sorted(PACKAGE.rglob("*.py"))
                 if DIALECT_FOLDER not in path.parents and (mentions := backend_mentions(path.read_text()))}
        # The one backend a user gets without choosing: the default of TREND_DATABASE_URL.
        assert found == {"config.py": ["line 135: the string 'sqlite:///trend.db'"]}

    def test_the_check_finds_each_kind_of_mention(self) -> None:
        """What the check above would say of code that named backends the ways this package once did."""
        source = '''"""A docstring may say SQLite."""
import psycopg
from sqlalchemy.dialects import postgresql
if url.startswith(("sqlite:", "postgresql+psycopg:")):
    pass
if dialect.name == "citus":
    pass
Index("x", column, sqlite_where=column.isnot(None))
'''
        assert backend_mentions(source) == [
            "line 2: imports psycopg", "line 3: imports sqlalchemy.dialects",
            "line 4: the string 'postgresql+psycopg:'", "line 4: the string 'sqlite:'", "line 6: the string 'citus'",
            "line 8: the option sqlite_where="]
