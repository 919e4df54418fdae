"""The seed's log format, which operators watch, with every timestamp's zone named.

    [트렌드] 2025-11-13 15:52:05 KST | INFO | Starting 1m aggregation for bucket: 2025-11-13 06:51:00 UTC (150 events)
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

LOGGER_NAME = "trend"
_HANDLER_NAME = "trend-default"


class ZonedFormatter(logging.Formatter):
    """``{prefix} {time} {zone} | {LEVEL} | {message}``, the time in the display zone."""

    def __init__(self, prefix: str, zone: ZoneInfo) -> None:
        super().__init__(f"{prefix} %(asctime)s | %(levelname)s | %(message)s")
        self._zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, tz=self._zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def configure_logging(prefix: str, zone: ZoneInfo, level: str) -> logging.Logger:
    """Install the format on the ``trend`` logger once; calling again updates it."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)
    handler.setFormatter(ZonedFormatter(prefix, zone))
    logger.setLevel(level)
    logger.propagate = False  # the format above is the contract; a root handler would print lines twice
    return logger


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
