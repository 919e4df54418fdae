"""What every command shares: the consoles, ``--json``, error handling, the Trend of a command,
times given on the command line, and the options of the queries."""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console

from trend import measures
from trend.config import load_settings
from trend.errors import ConfigError, InputError, StorageError
from trend.query.windows import WINDOWS
from trend.service import Trend
from trend.validation import parse_moment

F = TypeVar("F", bound=Callable[..., Any])
# Off a terminal rich assumes 80 columns; tables of times need more to stay readable in logs and pipes.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def counted(count: int, noun: str) -> str:
    """``1 duplicate``, ``2 duplicates``: a count with its noun agreeing."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def fail(message: str, error_code: str, as_json: bool, code: int = 2) -> None:
    """One line on stderr, or with ``--json`` the error shape on stdout; then a non-zero exit."""
    if as_json:
        click.echo(json.dumps({"error": {"code": error_code, "message": message}}, ensure_ascii=False))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


class Commands(click.Group):
    """The command group. With ``--json`` anywhere on the line, a usage error (a bad ``--window``, a
    missing option) is the JSON error shape on stdout too, so scripts parse every failure alike."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            fail(exc.format_message(), "invalid_argument", True, exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), "error", True, exc.exit_code)
        except click.Abort:
            fail("aborted", "aborted", True, 1)
        sys.exit(result if isinstance(result, int) else 0)


def handles_errors(func: F) -> F:
    """Turn our exceptions into a one-line message and an exit status, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json", False))
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), "invalid_setting", as_json)
        except InputError as exc:
            fail(str(exc), "invalid_input", as_json)
        except StorageError as exc:
            fail(str(exc), "database_error", as_json, code=3)
        except Exception as exc:
            if not as_json:
                raise
            # A bug: scripts still get the JSON error shape on stdout; the traceback goes to stderr.
            traceback.print_exc()
            fail(f"internal error: {type(exc).__name__}: {exc}", "internal_error", as_json, code=1)
        return None

    return wrapper  # type: ignore[return-value]  # wraps keeps the signature click needs


@contextmanager
def open_trend(**overrides: Any) -> Iterator[Trend]:
    """A Trend for one command, without its worker, closed when the command ends."""
    trend = Trend(load_settings(**{"worker_enabled": False, **overrides}))
    try:
        yield trend
    finally:
        trend.close()


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def cli_time(option: str, text: str) -> int:
    """ISO-8601 with a zone, epoch seconds, ``now``, or ``now-<duration>`` such as ``now-2h``."""
    try:
        return parse_moment(text, int(time.time() * 1000))
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def stop_on_signals(trend: Trend) -> None:
    """SIGINT or SIGTERM stop a run after its current bucket, which commits; its record says
    ``interrupted`` and the rest stays marked for the next run."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: trend.stopping.set())


event_option = click.option("--event", required=True, help="The event type, e.g. search.")
segment_option = click.option("--segment", default=None, help="One segment; all segments when omitted.")
limit_option = click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
class Rankings(click.Choice[str]):
    """The measures that rank, read when the option is parsed: a measure added to trend/measures.py is
    offered with the rest."""

    def __init__(self) -> None:
        super().__init__([])

    @property  # type: ignore[override]  # click.Choice keeps its choices in a plain attribute
    def choices(self) -> list[str]:
        return measures.rankings()

    @choices.setter
    def choices(self, _: object) -> None:
        pass


by_option = click.option("--by", type=Rankings(), default="count", show_default=True,
                         help="Rank by events (count), by distinct users (users), or by any other measure that ranks.")



def users_text(value: int | None) -> str:
    return "-" if value is None else str(value)


at_option = click.option("--at", default=None,
                         help="The window's end: ISO-8601 with a zone, epoch seconds, or now-<duration>.")
window_choice = click.Choice(list(WINDOWS))


def optional_time(option: str, text: str | None) -> int | None:
    return None if text is None else cli_time(option, text)
