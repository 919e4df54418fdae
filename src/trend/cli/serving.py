"""``trend serve`` and ``trend worker``: the long-running commands."""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import click

from trend.cli.common import handles_errors
from trend.config import Settings, load_settings
from trend.errors import ConfigError
from trend.logging import get_logger, uvicorn_log_config
from trend.service import Trend


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TREND_HOST", show_envvar=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="TREND_PORT",
              show_envvar=True)
@click.option("--no-worker", is_flag=True, help="Serve the API without running the scheduled jobs.")
@click.option("--access-log", is_flag=True, envvar="TREND_ACCESS_LOG", show_envvar=True,
              help="Log every request (uvicorn's access log).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), envvar="TREND_WORKERS",
              show_envvar=True, help="Server processes. The scheduled jobs run once, in this process, and "
                                     "/metrics sums the counters of every process.")
@click.option("--allow-keyless", is_flag=True,
              help="Serve beyond loopback without TREND_API_KEY (TREND_ALLOW_KEYLESS), e.g. behind a proxy that "
                   "authenticates. Without it, that refuses to start.")
@handles_errors
def serve(host: str, port: int, no_worker: bool, access_log: bool, workers: int, allow_keyless: bool) -> None:
    """The API, the dashboard and the worker."""
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus-client reads the variable when it is imported, so this process starts again with it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="trend-metrics-")
        os.execv(sys.executable, [sys.executable, "-m", "trend", *sys.argv[1:]])
    settings = load_settings(host=host, **({"worker_enabled": False} if no_worker else {}),
                             **({"allow_keyless": True} if allow_keyless else {}))
    check_exposure(host, settings)
    if workers > 1:
        _serve_in_processes(settings, host, port, access_log, workers)
        return
    _serve_here(Trend(settings), host, port, access_log)


def _serve_here(trend: Trend, host: str, port: int, access_log: bool) -> None:
    """One process: the app, with the worker in its lifespan."""
    import uvicorn

    from trend.api.app import create_app

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # bound: a busy port fails before this, with uvicorn's own error
                get_logger("serve").info("serving http://%s:%d (dashboard at /, API docs at /docs)", host, port)

    try:
        trend.db.ensure_schema()
        # uvicorn raises the signal that stopped it again once it has shut down, which would end the
        # process as killed (143); a SIGTERM that stopped the server cleanly is a clean exit.
        signal.signal(signal.SIGTERM, lambda *_: None)
        logs = uvicorn_log_config(trend.settings.log_prefix, trend.settings.log_format)
        Server(uvicorn.Config(create_app(trend=trend), host=host, port=port, access_log=access_log,
                              log_level="info" if access_log else "warning", log_config=logs)).run()
    finally:
        trend.close()


def _serve_in_processes(settings: Settings, host: str, port: int, access_log: bool, workers: int) -> None:
    """uvicorn's supervisor and ``workers`` server processes. The scheduled jobs run here, in the
    supervisor, so once whatever the number of servers; the servers run without a worker. Counters
    go to prometheus-client's multiprocess files, which any process's /metrics sums."""
    import uvicorn

    # The server processes' settings: no worker of their own, and the bound address (api/keyless.py).
    os.environ["TREND_WORKER_ENABLED"] = "false"
    os.environ["TREND_HOST"] = host
    trend = Trend(settings)
    try:
        trend.db.ensure_schema()
        if settings.worker_enabled:
            trend.start_worker()
        signal.signal(signal.SIGTERM, lambda *_: None)  # as in _serve_here: a clean stop is a clean exit
        get_logger("serve").info("serving http://%s:%d with %d processes (dashboard at /, API docs at /docs)",
                                 host, port, workers)
        uvicorn.run("trend.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    access_log=access_log, log_level="info" if access_log else "warning",
                    log_config=uvicorn_log_config(settings.log_prefix, settings.log_format))
    finally:
        trend.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_exposure(host: str, settings: Settings) -> bool:
    """Binding beyond loopback without a key lets anyone write events and run jobs: refused, unless
    ``--allow-keyless`` says a proxy in front authenticates; then said loudly. True when exposed."""
    if is_loopback(host) or settings.api_key is not None:
        return False
    if not settings.allow_keyless:
        raise ConfigError("TREND_API_KEY", f"serving on {host} beyond loopback needs a key: set TREND_API_KEY, "
                                           "bind to 127.0.0.1, or pass --allow-keyless (TREND_ALLOW_KEYLESS=true) "
                                           "when a proxy in front authenticates every request")
    get_logger("serve").warning(
        "LISTENING ON %s WITHOUT TREND_API_KEY (--allow-keyless): anyone who can reach this port can write events "
        "and run jobs, unless the proxy in front authenticates them.", host)
    return True


@click.command()
@click.option("--metrics-port", type=click.IntRange(1, 65535), envvar="TREND_WORKER_METRICS_PORT", show_envvar=True,
              help="Serve Prometheus metrics (the job runs, the lag, the database) at /metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, envvar="TREND_WORKER_METRICS_HOST",
              show_envvar=True, help="The address the metrics port binds; 0.0.0.0 for a scraper in another host.")
@handles_errors
def worker(metrics_port: int | None, metrics_host: str) -> None:
    """Run the scheduler alone until SIGINT or SIGTERM, then stop gracefully."""
    trend = Trend(load_settings(worker_enabled=True))
    trend.db.ensure_schema()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop_metrics = _serve_metrics(trend, metrics_host, metrics_port) if metrics_port else None
    trend.start_worker()
    while not stop.wait(1.0):
        pass
    # Running buckets finish their transaction (or roll back); nothing is half written.
    trend.close()
    if stop_metrics is not None:
        stop_metrics()


def _serve_metrics(trend: Trend, host: str, port: int) -> Callable[[], None]:
    try:
        stop = trend.metrics.serve(host, port)
    except OSError as exc:
        raise ConfigError("TREND_WORKER_METRICS_PORT", f"{port}: cannot bind {host}: {exc.strerror}") from None
    get_logger("worker").info("metrics at http://%s:%d/metrics", host, port)
    return stop
