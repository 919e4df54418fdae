"""``create_app(settings)``: the API, and a lifespan that starts and stops the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from trend.api import keyless
from trend.api.errors import install_error_handlers
from trend.api.router import build_router
from trend.api.routes import docs, events
from trend.config import Settings
from trend.service import Trend
from trend.version import __version__

# A Trend imported from trend.service (not through `trend`) learns here how to build its router.
Trend.router_builder = build_router


def create_app(settings: Settings | None = None, *, trend: Trend | None = None) -> FastAPI:
    """Build the app around ``trend`` (or a new one from ``settings``); the worker starts with the app
    when ``TREND_WORKER_ENABLED`` is true."""
    owned = trend is None
    service = trend if trend is not None else Trend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.lifespan(app):
            yield
        if owned:
            service.close()

    # The router serves /docs (offline) and /openapi.json itself, so the app's own are off.
    app = FastAPI(title=docs.TITLE, version=__version__, lifespan=lifespan, description=docs.DESCRIPTION,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.trend = service
    keyless.install(app, service.settings)
    if service.settings.cors_origins:
        # Outermost, so refusals (a wrong Host, a cross-site write) carry the CORS headers too and a
        # page can read why.
        app.add_middleware(CORSMiddleware, allow_origins=service.settings.cors_origins,
                           allow_methods=["GET", "HEAD", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "If-None-Match"],
                           expose_headers=["ETag", "Retry-After"], max_age=600)
    install_error_handlers(app)
    app.include_router(service.router)
    return app


def mount(app: FastAPI, trend: Trend, prefix: str = "") -> None:
    """Include ``trend``'s API in an app of your own under ``prefix``, its /openapi.json complete at once.

    ``app.include_router(trend.router, prefix=prefix)`` serves the same API, but the events body's
    named schemas (``Event``, ``EventBatch``) reach the app's schema only when the app starts (the
    router's lifespan): a script that calls ``app.openapi()`` without starting the app, to dump the
    schema at build time, gets them only through this.
    """
    app.include_router(trend.router, prefix=prefix.rstrip("/"))  # "/trend/" as "/trend", and "/" as none
    docs.add_schemas(app, events.SCHEMAS)
