from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.convertors import PathConvertor, register_url_convertor

from trend.api.admission import Admission
from trend.api.body import check_media, event_list, parse_json, read_limited, unpacked
from trend.api.deps import write_access
from trend.api.errors import error_responses, trend_router
from trend.api.models import Accepted, ErasedUser
from trend.errors import PayloadTooLargeError
from trend.model import KEY_MAX, SEGMENT_MAX
from trend.service import Trend
from trend.validation import EventIn, fast_batch

_EVENT = {**EventIn.model_json_schema(), "title": "Event"}
# The model stores ts as ms after parsing; the wire form is ISO-8601 with a zone, or epoch seconds.
_EVENT["properties"]["ts"] = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}, {"type": "null"}],
    "description": "ISO-8601 with a zone, or epoch seconds; default now",
}
# The model bounds the raw text loosely (normalizing can shorten it); the limits that hold are on the
# normalized key and segment, and those are the ones a client must respect.
_EVENT["properties"]["key"] |= {"maxLength": KEY_MAX, "description": (
    f"What trends: at most {KEY_MAX} characters after TREND_KEY_NORMALIZATION (by default NFKC, "
    "case folded, white space collapsed)")}
_EVENT["properties"]["segment"] |= {"maxLength": SEGMENT_MAX, "description": (
    f"e.g. a country or platform; at most {SEGMENT_MAX} characters after normalization; empty for none")}
_EVENT["properties"]["event_id"]["description"] = "The client's id for the event: a retry with this id is a duplicate"
_REF = {"$ref": "#/components/schemas/Event"}
# Named once each, so clients generated from the schema get an Event and an EventBatch type.
SCHEMAS = {
    "Event": _EVENT,
    "EventBatch": {"title": "EventBatch", "type": "object", "properties": {"events": {"type": "array", "items": _REF}},
                   "required": ["events"], "additionalProperties": False},
}
_BODY = {"oneOf": [_REF, {"type": "array", "items": _REF}, {"$ref": "#/components/schemas/EventBatch"}]}


class _AnyText(PathConvertor):
    regex = "(?s:.*)"


register_url_convertor("trend_any", _AnyText())


def router(trend: Trend, admission: Admission) -> APIRouter:
    api = trend_router(tags=["events"])

    @api.post("/v1/events", status_code=202, response_model=Accepted,
              dependencies=[write_access(trend), admission.write()],
              summary="Ingest one event, an array, or {\"events\": [...]}; a batch is atomic",
              responses=error_responses(401, 403, 413, 415, 422, 429, 503),
              description="The body may be sent with Content-Encoding: gzip (trend.client does); it is unpacked "
                          "within the same size limit, and one that unpacks past it is a 413.",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY}}}})
    async def ingest_events(request: Request) -> Accepted:
        settings = trend.settings
        raw = unpacked(await read_limited(request, settings.max_body_bytes), request.headers.get("content-encoding"),
                       settings.max_body_bytes)
        check_media(request.headers.get("content-type"))
        # A batch that is plainly valid is decoded and checked in msgspec; any other body takes the
        # full check, which names what is wrong. The database call blocks: off the event loop.
        fields = fast_batch(raw)
        if fields is not None:
            if len(fields) > settings.max_batch_events:
                raise PayloadTooLargeError("the number of events in one batch", settings.max_batch_events)
            result = await admission.run(admission.write_pool, lambda: trend.ingestor.ingest_decoded(fields))
        else:
            events = event_list(parse_json(raw), settings.max_batch_events)
            result = await admission.run(admission.write_pool, lambda: trend.ingest(events))
        return Accepted(accepted=result.accepted, duplicates=result.duplicates)

    # The whole rest of the path, so an id with a "/" in it (sent as is, or as %2F, which the server
    # decodes first) is one id, and so is one with a line break (Starlette's :path stops at one).
    @api.delete("/v1/users/{user_id:trend_any}", response_model=ErasedUser, dependencies=[write_access(trend)],
                summary="Erase one person's raw events; every level is recomputed without them (admin)",
                responses=error_responses(401, 403, 422, 503))
    async def erase_user(user_id: Annotated[str, Path(min_length=1, max_length=128)]) -> ErasedUser:
        erased = await admission.run(admission.write_pool, lambda: trend.erase_user(user_id))
        return ErasedUser(user_id=user_id, events=erased.events, minutes=erased.minutes)

    # Any id, as a query parameter: a path's "." and ".." segments are resolved before routing.
    @api.delete("/v1/users", response_model=ErasedUser, dependencies=[write_access(trend)],
                summary="Erase one person's raw events, the id given as a query parameter (admin)",
                responses=error_responses(401, 403, 422, 503))
    async def erase_user_by_query(user_id: Annotated[str, Query(min_length=1, max_length=128)]) -> ErasedUser:
        return await erase_user(user_id)

    return api
