"""GET /v1/series, /v1/top, /v1/rising and /v1/dimensions.

Annotations here are evaluated when the routes are defined (no ``from __future__ import annotations``):
the interval and ``by`` choices come from the Trend and the measures, in the router's own scope.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from trend import measures
from trend.api import models
from trend.api.admission import Admission
from trend.api.answers import SharedAnswers, Stamp
from trend.api.deps import Event, Limit, Segment, Time, optional_time, read_access
from trend.api.errors import HOT_ANSWERS, error_responses, trend_router
from trend.query.windows import WINDOWS
from trend.service import Trend
from trend.shapes import rising_shape, series_shape, top_shape


def _one_of(choices: list[str], description: str) -> Any:
    """A query parameter that takes one of ``choices``: a string with a pattern, not an enum, so a
    generated client takes ``window="1h"`` as it is (openapi-python-client makes enums it cannot name)."""
    return Query(pattern=f"^({'|'.join(choices)})$", description=f"{description}: {', '.join(choices)}")


WindowName = Annotated[str, _one_of(list(WINDOWS), "the window, ending at `at`")]
_CACHED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the If-None-Match ETag is the current one (same parameters, minute and data)"}}


def _cache_headers(trend: Trend) -> dict[str, str]:
    """``Cache-Control: max-age`` from TREND_HTTP_MAX_AGE; private where reads need a key, so no shared
    cache hands them to others."""
    settings = trend.settings
    scope = "private" if settings.read_key is not None else "public"
    return {"Cache-Control": f"{scope}, max-age={settings.http_max_age}", "Vary": "Accept-Encoding, Authorization"}


MAX_EVENTS_SHOWN = 500  # event types in /v1/dimensions, the first by code point
MAX_SEGMENTS_SHOWN = 200  # segments of each


def router(trend: Trend, admission: Admission) -> APIRouter:
    api = trend_router(tags=["trends"], dependencies=[read_access(trend), admission.read()],
                    responses=error_responses(401, 403, 422, 429, 503))
    zone = trend.settings.zone
    shapes = models.measure_models()
    # A series interval is one of this Trend's levels, and by= a measure that ranks; anything else is
    # a QueryError (422) from the query itself.
    interval_type = Annotated[str, _one_of(trend.levels.names, "a rollup level")]
    by_type = Annotated[str, _one_of(measures.rankings(), "the measure to rank by: events (count), distinct users "
                                                          "(users), or another measure that ranks")]

    # With a read key, an answer goes out only after the routes' own checks of the key: none early.
    early = None if trend.settings.read_key is not None else admission.check_read
    answers = SharedAnswers(trend.settings.read_share_ms, Stamp(trend.change_stamp), _cache_headers(trend),
                            lambda call: admission.run(admission.read_pool, call), admission.reading,
                            trend.clock.now_ms, early)
    trend.after_write.append(answers.written)

    @api.get("/v1/series", response_model=shapes.series, responses=_CACHED,
             summary="One point per bucket of the interval, zero-filled")
    async def series(request: Request, event: Event,
                     key: Annotated[list[str] | None, Query(max_length=256)] = None,
                     segment: Segment = None, interval: interval_type = "1m",
                     start: Time = None, end: Time = None,
                     compare: Annotated[Literal["previous"] | None, Query()] = None) -> Response:
        """``key`` repeated (up to 5) compares keys; ``compare=previous`` adds the period before."""
        keys = None if not key else (key[0] if len(key) == 1 else key)
        start_ms, end_ms = optional_time(trend, "start", start), optional_time(trend, "end", end)
        return await answers.respond(
            request, ("series", event, tuple(key or ()), segment, interval, start_ms, end_ms, compare),
            end_ms if end_ms is not None else trend.clock.now_ms(),
            lambda: series_shape(trend.series(event, key=keys, segment=segment, interval=interval,
                                              start_ms=start_ms, end_ms=end_ms, compare=compare), zone),
            now=start_ms is None and end_ms is None)

    @api.get("/v1/top", response_model=shapes.top, responses=_CACHED,
             summary="Keys by count or users over a window ending at `at`, with rank change")
    async def top(request: Request, event: Event, segment: Segment = None, window: WindowName = "1h",
                  at: Time = None, limit: Limit = 10, by: by_type = "count") -> Response:
        at_ms = optional_time(trend, "at", at)
        when = at_ms if at_ms is not None else trend.clock.now_ms()
        return await answers.respond(
            request, ("top", event, segment, window, at_ms, limit, by), when,
            lambda: top_shape(trend.top(event, segment=segment, window=window, at_ms=when, limit=limit, by=by), zone),
            now=at_ms is None)

    @api.get("/v1/rising", response_model=shapes.rising, responses=_CACHED,
             summary="Keys rising against the windows before, by their share of the stream (or z-score)")
    async def rising(request: Request, event: Event, segment: Segment = None, window: WindowName = "15m",
                     baseline: Annotated[int, Query(ge=1, le=48)] = 12,
                     min_count: Annotated[int, Query(ge=1, le=1_000_000, description=(
                         "Only keys with at least this much now are scored: a few events are noise"))] = 5,
                     at: Time = None, limit: Limit = 10, by: by_type = "count",
                     score: Annotated[str, _one_of(["poisson", "zscore"], (
                         "poisson (the default): the key's share of the stream against its share before; "
                         "zscore: the key against its own past, as earlier releases scored"))] = "poisson",
                     ) -> Response:
        at_ms = optional_time(trend, "at", at)
        when = at_ms if at_ms is not None else trend.clock.now_ms()
        return await answers.respond(
            request, ("rising", event, segment, window, baseline, min_count, at_ms, limit, by, score), when,
            lambda: rising_shape(trend.rising(event, segment=segment, window=window, baseline=baseline,
                                              min_count=min_count, at_ms=when, limit=limit, by=by, score=score),
                                 zone), now=at_ms is None)

    @api.get("/v1/dimensions", response_model=models.Dimensions,
             summary="Every event type and its segments, and the series intervals")
    async def dimensions(request: Request) -> dict[str, Any]:
        async with admission.reading(request):
            known = await admission.run(admission.read_pool, trend.dimensions)
        # Bounded: the dashboard loads this on every visit, and anyone who may write can add event types.
        shown = list(known.items())[:MAX_EVENTS_SHOWN]
        truncated = len(known) > MAX_EVENTS_SHOWN or any(len(s) > MAX_SEGMENTS_SHOWN for _, s in shown)
        return {"events": [{"event": event, "segments": segments[:MAX_SEGMENTS_SHOWN]} for event, segments in shown],
                "truncated": truncated,
                "intervals": trend.levels.names, "rankings": measures.rankings(),
                "interval_limits": [{"interval": level.name, "seconds": level.width // 1000,
                                     "max_points": level.max_points} for level in trend.levels]}

    for path, endpoint in (("/v1/series", series), ("/v1/top", top), ("/v1/rising", rising)):
        HOT_ANSWERS[endpoint] = answers.hot
        # HEAD answers as GET does, without the body (a cache or a monitor checking the ETag), and
        # stays out of the schema: one operation each.
        api.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
    return api
