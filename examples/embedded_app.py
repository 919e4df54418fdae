"""An existing FastAPI app that embeds trend, with the rollup worker started by the app's lifespan.

    TREND_DATABASE_URL=sqlite:///shop.db uvicorn examples.embedded_app:app

The app records searches, shows what is popular next to its own results, and mounts trend's API
under /trend (so /trend/v1/top, /trend/v1/events, /trend/metrics ...). Its /openapi.json holds
trend's operations and schemas, also when dumped without starting the app (``app.openapi()``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from trend import Trend
from trend.api.app import mount

trend = Trend()  # settings from TREND_* variables


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Starts the rollup worker with the app and stops it gracefully on shutdown.
    async with trend.lifespan(app):
        yield


app = FastAPI(title="shop", lifespan=lifespan)
mount(app, trend, prefix="/trend")  # or app.include_router(trend.router, prefix="/trend")


@app.get("/search")
def search(q: str) -> dict[str, Any]:
    """The app's own endpoint: it records the search, then answers with what is popular now."""
    trend.ingest([{"event": "search", "key": q}])
    popular = trend.top("search", window="1h", limit=5)
    return {"query": q, "results": [], "popular": [item.key for item in popular.items]}
