"""trend: exact, real-time trends from an event stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trend.extras import server_part_missing
from trend.version import __version__

if TYPE_CHECKING:
    from fastapi import APIRouter

    from trend.service import Trend

__all__ = ["Trend", "__version__"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: an app that imports only trend.client, to send events, never loads the
    # database layers (SQLAlchemy, the drivers, the scheduler).
    if name == "Trend":
        try:
            from trend.service import Trend
        except ModuleNotFoundError as error:
            server_part_missing("trend.Trend", error)

        Trend.router_builder = _build_router
        return Trend
    raise AttributeError(f"module 'trend' has no attribute {name!r}")


def _build_router(trend: Trend) -> APIRouter:
    # Imported on first use: FastAPI loads only for those who serve or embed the API.
    from trend.api.router import build_router

    return build_router(trend)
