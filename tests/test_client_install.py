"""trend.client installs alone: trend without the server extra, in a fresh venv, is the client and
httpx, and the client sends events to a real server without loading any of the server's packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deadlines import scaled
from tests.servers import Served

pytestmark = pytest.mark.slow  # a venv, a build and a real server: make test, not make check

ROOT = Path(__file__).resolve().parents[1]
# httpx and what it needs, with what a fresh venv of Python 3.11 holds already.
CLIENT_DISTRIBUTIONS = {"trend", "httpx", "httpcore", "h11", "anyio", "idna", "certifi", "sniffio",
                        "typing_extensions", "typing-extensions", "pip", "setuptools", "exceptiongroup"}
SERVER_MODULES = ["sqlalchemy", "psycopg", "apscheduler", "fastapi", "starlette", "uvicorn", "pydantic", "click",
                  "rich", "prometheus_client", "datasketches", "msgspec"]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install <a copy of this checkout>``: no extra, as a client user installs."""
    folder = tmp_path_factory.mktemp("client-only")
    source = folder / "trend"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a file deleted but not yet committed is still listed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=scaled(60))
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                                str(source)], capture_output=True, text=True, timeout=scaled(240))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(f"sqlite:///{tmp_path / 't.db'}", "--no-worker")
    yield server
    server.stop()


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=scaled(60), cwd=venv)  # not the checkout, whose src/ is not on the path anyway


class TestClientOnlyInstall:
    def test_only_the_client_and_httpx_are_installed(self, client_venv: Path) -> None:
        listed = json.loads(_run(client_venv, "pip", "list", "--format", "json").stdout)
        names = {entry["name"].lower() for entry in listed}
        assert names <= CLIENT_DISTRIBUTIONS, names - CLIENT_DISTRIBUTIONS
        assert {"trend", "httpx"} <= names

    def test_the_client_delivers_to_a_real_server_and_loads_nothing_of_the_server(
            self, client_venv: Path, served: Served) -> None:
        script = textwrap.dedent(f"""
            import json, sys
            from trend.client import TrendClient
            client = TrendClient({served.url!r})
            for person in ("u1", "u2", "u3"):
                client.track("search", "Umbrella", user_id=person)
            delivered = client.close(30)
            loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({SERVER_MODULES!r}))
            print(json.dumps({{"delivered": delivered, "stats": client.stats.delivered, "loaded": loaded}}))
        """)
        ran = _run(client_venv, "python", "-c", script)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout) == {"delivered": True, "stats": 3, "loaded": []}
        top = httpx.get(f"{served.url}/v1/top", params={"event": "search", "by": "users"}).json()
        assert [(item["key"], item["count"], item["users"]) for item in top["items"]] == [("umbrella", 3, 3)]

    def test_the_server_parts_say_what_to_install(self, client_venv: Path) -> None:
        ran = _run(client_venv, "trend", "serve")
        assert ran.returncode == 1
        assert "pip install 'trend[server]'" in ran.stderr, ran.stderr
        assert "Traceback" not in ran.stderr
        ran = _run(client_venv, "python", "-c", "from trend import Trend")
        assert ran.returncode == 1
        assert "ImportError: trend.Trend: this part of trend needs the server's packages" in ran.stderr, ran.stderr
        assert "pip install 'trend[server]'" in ran.stderr
        ran = _run(client_venv, "python", "-c", "from trend.api.app import mount")  # the README's embedding
        assert "ImportError: trend.api: this part of trend needs the server's packages" in ran.stderr, ran.stderr
