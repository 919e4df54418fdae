"""What a client-only install lacks: ``pip install trend`` brings the client and httpx alone, and the
server, the command line and the embedded API come with the ``server`` extra."""

from __future__ import annotations

from typing import NoReturn

SERVER_INSTALL = "pip install 'trend[server]'"

# The import names of the server extra's packages (pyproject.toml), and of what they bring.
_SERVER_PACKAGES = frozenset({
    "sqlalchemy", "psycopg", "apscheduler", "fastapi", "starlette", "uvicorn", "pydantic", "pydantic_settings",
    "click", "rich", "tzdata", "prometheus_client", "datasketches", "msgspec", "swagger_ui_bundle",
})


def missing_server_part(error: ModuleNotFoundError) -> str | None:
    """The message for an import that failed because the server extra is not installed, else None."""
    name = (error.name or "").split(".")[0]
    if name not in _SERVER_PACKAGES:
        return None
    return f"this part of trend needs the server's packages ({name} is not installed): {SERVER_INSTALL}"


def server_part_missing(where: str, error: ModuleNotFoundError) -> NoReturn:
    """Raise, from ``except ModuleNotFoundError as error``: an ImportError that says what to install
    when the server extra is what is missing, else ``error`` itself."""
    message = missing_server_part(error)
    if message is None:
        raise error
    raise ImportError(f"{where}: {message}", name=error.name) from error
