"""``trend serve`` and ``trend worker``: the long-running commands."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from trend.cli.common import handles_errors
from trend.config import Settings, load_settings
from trend.logging import get_logger
from trend.service import Trend


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TREND_HOST", show_envvar=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="TREND_PORT",
              show_envvar=True)
@click.option("--no-worker", is_flag=True, help="Serve the API without running the scheduled jobs.")
@click.option("--access-log", is_flag=True, envvar="TREND_ACCESS_LOG", show_envvar=True,
              help="Log every request (uvicorn's access log).")
@handles_errors
def serve(host: str, port: int, no_worker: bool, access_log: bool) -> None:
    """The API, the dashboard and the worker."""
    import uvicorn

    from trend.api.app import create_app

    settings = load_settings(**({"worker_enabled": False} if no_worker else {}))
    trend = Trend(settings)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # bound: a busy port fails before this, with uvicorn's own error
                get_logger("serve").info("serving http://%s:%d (dashboard at /, API docs at /docs)", host, port)

    try:
        trend.db.ensure_schema()
        warn_if_exposed(host, settings)
        # uvicorn raises the signal that stopped it again once it has shut down, which would end the
        # process as killed (143); a SIGTERM that stopped the server cleanly is a clean exit.
        signal.signal(signal.SIGTERM, lambda *_: None)
        Server(uvicorn.Config(create_app(trend=trend), host=host, port=port, access_log=access_log,
                              log_level="info" if access_log else "warning")).run()
    finally:
        trend.close()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def warn_if_exposed(host: str, settings: Settings) -> bool:
    """Binding beyond loopback without a key lets anyone write events and run jobs: say so loudly."""
    if host in LOOPBACK or settings.api_key is not None:
        return False
    get_logger("serve").warning(
        "LISTENING ON %s WITHOUT TREND_API_KEY: anyone who can reach this port can write events and run jobs. "
        "Set TREND_API_KEY, or bind to 127.0.0.1.", host)
    return True


@click.command()
@handles_errors
def worker() -> None:
    """Run the scheduler alone until SIGINT or SIGTERM, then stop gracefully."""
    trend = Trend(load_settings(worker_enabled=True))
    trend.db.ensure_schema()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    trend.start_worker()
    while not stop.wait(1.0):
        pass
    # Running buckets finish their transaction (or roll back); nothing is half written.
    trend.close()


