"""trend: exact, real-time trends from an event stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trend.service import Trend
from trend.version import __version__

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["Trend", "__version__"]


def _build_router(trend: Trend) -> APIRouter:
    # Imported on first use: FastAPI loads only for those who serve or embed the API.
    from trend.api.router import build_router

    return build_router(trend)


Trend.router_builder = _build_router
