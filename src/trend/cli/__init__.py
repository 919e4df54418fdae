"""The ``trend`` command group. Every command takes ``--json`` for machine-readable output."""

from __future__ import annotations

import click

from trend.cli.alerts import alerts
from trend.cli.common import Commands
from trend.cli.demo import demo
from trend.cli.ingesting import ingest
from trend.cli.jobs import backfill, erase_user, rollup, status
from trend.cli.queries import rising, series, top
from trend.cli.serving import check_exposure, serve, worker
from trend.logging import own_process_logging

__all__ = ["check_exposure", "main"]


@click.group(cls=Commands)
@click.version_option(package_name="trend")
def main() -> None:
    """trend: exact, real-time trends from an event stream."""
    own_process_logging()  # this process is trend's: its log format is the output, not the host's


for command in (serve, worker, ingest, rollup, backfill, erase_user, status, top, rising, series, demo, alerts):
    main.add_command(command)
