from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from trend.api.deps import TrendDep
from trend.errors import StorageError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The database, the worker, and the lag of the oldest dirty bucket")
async def healthz(trend: TrendDep) -> JSONResponse:
    body: dict[str, Any] = {"worker": {"enabled": trend.settings.worker_enabled,
                                       "running": trend.worker.running}}
    try:
        body["lag_seconds"] = await run_in_threadpool(trend.lag_seconds)
        body["database"] = "ok"
    except StorageError as exc:
        body["database"] = "unavailable"
        body["error"] = str(exc).split(":")[0]
        return JSONResponse({"status": "unavailable", **body}, 503)
    healthy = not trend.settings.worker_enabled or trend.worker.running
    return JSONResponse({"status": "ok" if healthy else "degraded", **body}, 200)
