"""trend's log lines: the seed's format, which operators watch, or JSON; every time in the display zone
(``TREND_TIMEZONE``) with the zone named, the line's own time and the buckets alike.

    [트렌드] 2025-11-13 15:52:05 KST | INFO | Starting 1m aggregation for bucket: 2025-11-13 15:51:00 KST (150 events)

Who decides where lines go: trend's own commands (``serve``, ``worker`` and the rest) own their
process, so trend's handler prints every line and nothing propagates. Embedded in an app, trend's
lines propagate to the app's logging; trend's handler prints them only while the app has configured
no handler at all, so they are not lost.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

LOGGER_NAME = "trend"
_HANDLER_NAME = "trend-default"
PROCESS = f"{socket.gethostname()}:{os.getpid()}"
@dataclass
class _Display:
    zone: ZoneInfo  # TREND_TIMEZONE: every time in a line
    owned: bool  # trend's own command runs this process, so its handler prints every line


_display = _Display(ZoneInfo("UTC"), owned=False)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=_display.zone).strftime("%Y-%m-%d %H:%M:%S %Z")


@dataclass(frozen=True)
class LogTime:
    """A time (ms since the epoch) in a log line, shown as the line's own time is: same zone, named."""

    ms: int

    def __str__(self) -> str:
        return _stamp(self.ms / 1000)


class SeedFormatter(logging.Formatter):
    """``{prefix} {time} {zone} | {LEVEL} | {message}``."""

    def __init__(self, prefix: str) -> None:
        super().__init__(f"{prefix} %(asctime)s | %(levelname)s | %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _stamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 with its offset), zone, level, logger, process, message;
    a request of uvicorn's access log also as fields: client, method, path, http_version, status."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=_display.zone).isoformat(timespec="milliseconds"),
            "zone": str(_display.zone), "level": record.levelname, "logger": record.name, "process": PROCESS,
            "message": record.getMessage()}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == len(_ACCESS):
            line |= dict(zip(_ACCESS, record.args, strict=True))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


# The arguments of uvicorn's access line, in order: '%s - "%s %s HTTP/%s" %d'.
_ACCESS = ("client", "method", "path", "http_version", "status")


def _unless_the_app_logs(_record: logging.LogRecord) -> bool:
    # Embedded: once the app has handlers of its own, the lines reach them by propagation instead.
    return _display.owned or not logging.getLogger().handlers


def own_process_logging() -> None:
    """For trend's own commands: trend's handler prints every line, whatever else is configured."""
    _display.owned = True
    logging.getLogger(LOGGER_NAME).propagate = False


def configure_logging(prefix: str, zone: ZoneInfo, level: str, form: str = "seed") -> logging.Logger:
    """Install trend's handler on the ``trend`` logger once; calling again updates it."""
    _display.zone = zone
    logger = logging.getLogger(LOGGER_NAME)
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(_unless_the_app_logs)
        logger.addHandler(handler)
    handler.setFormatter(JsonFormatter() if form == "json" else SeedFormatter(prefix))
    logger.setLevel(level)
    return logger


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def uvicorn_log_config(prefix: str, form: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` for trend's own commands: its lines (start-up, errors, the access log)
    in trend's format, JSON included, rather than uvicorn's own."""
    formatter = {"()": JsonFormatter} if form == "json" else {"()": SeedFormatter, "prefix": prefix}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"trend": formatter},
        # As uvicorn's own: the access log on stdout, the rest on stderr with trend's lines.
        "handlers": {"trend": {"class": "logging.StreamHandler", "formatter": "trend", "stream": "ext://sys.stderr"},
                     "access": {"class": "logging.StreamHandler", "formatter": "trend", "stream": "ext://sys.stdout"}},
        "loggers": {"uvicorn": {"handlers": ["trend"], "level": "INFO", "propagate": False},
                    "uvicorn.error": {"level": "INFO"},
                    "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }
