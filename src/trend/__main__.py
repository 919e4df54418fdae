"""``trend`` and ``python -m trend``: the command line, or what to install where only the client is."""

from __future__ import annotations

import sys

from trend.extras import missing_server_part


def main() -> None:
    try:
        from trend.cli import main as command_line
    except ModuleNotFoundError as error:
        message = missing_server_part(error)
        if message is None:
            raise
        sys.exit(f"trend: {message}")
    command_line()


if __name__ == "__main__":
    main()
