"""The ``trend`` command group. Every command takes ``--json`` for machine-readable output."""

from __future__ import annotations

import difflib
import importlib

import click

from trend.cli.common import Commands
from trend.logging import own_process_logging

__all__ = ["main"]

# Each command's module is imported when that command runs (or ``--help`` lists them all): ``trend top``
# never loads the server, the demo, file ingest or the progress bars.
COMMANDS = {
    "alerts": "trend.cli.alerts:alerts",
    "backfill": "trend.cli.jobs:backfill",
    "demo": "trend.cli.demo:demo",
    "erase-user": "trend.cli.jobs:erase_user",
    "ingest": "trend.cli.ingesting:ingest",
    "rising": "trend.cli.queries:rising",
    "rollup": "trend.cli.jobs:rollup",
    "series": "trend.cli.queries:series",
    "serve": "trend.cli.serving:serve",
    "status": "trend.cli.jobs:status",
    "top": "trend.cli.queries:top",
    "worker": "trend.cli.serving:worker",
}


class LoadedOnUse(Commands):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return command

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as error:
            # click suggests from the commands it holds, and this group holds none until they are used.
            close = difflib.get_close_matches(args[0], COMMANDS) if args and args[0] not in COMMANDS else []
            if not close or "Did you mean" in error.message or "Possible commands" in error.message:
                raise
            hint = f"Did you mean {close[0]!r}?" if len(close) == 1 else f"(Possible commands: {', '.join(close)})"
            raise click.UsageError(f"{error.message} {hint}", ctx) from None


@click.group(cls=LoadedOnUse)
@click.version_option(package_name="trend")
def main() -> None:
    """trend: exact, real-time trends from an event stream."""
    own_process_logging()  # this process is trend's: its log format is the output, not the host's
