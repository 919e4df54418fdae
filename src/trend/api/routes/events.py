from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from trend.api.body import event_list, parse_json, read_limited
from trend.api.deps import write_access
from trend.service import Trend


class Accepted(BaseModel):
    accepted: int
    duplicates: int


def router(trend: Trend) -> APIRouter:
    api = APIRouter(tags=["events"])

    @api.post("/v1/events", status_code=202, response_model=Accepted, dependencies=[write_access(trend)],
              summary="Ingest one event, an array, or {\"events\": [...]}; a batch is atomic")
    async def post_events(request: Request) -> Accepted:
        settings = trend.settings
        raw = await read_limited(request, settings.max_body_bytes)
        events = event_list(parse_json(raw, request.headers.get("content-type")), settings.max_batch_events)
        # The database call blocks; keep it off the event loop so other requests are never stalled.
        result = await run_in_threadpool(trend.ingest, events)
        return Accepted(accepted=result.accepted, duplicates=result.duplicates)

    return api
