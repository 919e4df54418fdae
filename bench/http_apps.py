"""The app ``bench.http_ingest`` serves: trend's own API, plus bare endpoints on the same server.

* ``POST /bare/events`` takes the body as FastAPI does for a ``list[dict[str, Any]]`` parameter
  (JSON decoding and pydantic's check of the shape) and discards it: what any FastAPI endpoint pays;
* ``GET /bare/top`` returns a constant JSON body of the size of a ``top`` answer.

    uvicorn bench.http_apps:app --factory   (settings from TREND_* variables, as ``trend serve``)
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Response

from trend.api.app import create_app
from trend.config import load_settings


def app() -> FastAPI:
    served = create_app(load_settings())
    constant = os.environ.get("BENCH_TOP_BODY", "{}").encode()

    @served.post("/bare/events", status_code=202)
    async def bare_events(events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"accepted": 0, "duplicates": 0, "received": len(events)}

    @served.get("/bare/top")
    async def bare_top() -> Response:
        return Response(constant, media_type="application/json")

    return served
