"""GET /v1/series, /v1/top, /v1/rising and /v1/dimensions.

Annotations here are evaluated when the routes are defined (no ``from __future__ import annotations``):
the interval and ``by`` choices come from the Trend and the measures, in the router's own scope.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from trend import measures
from trend.api import models
from trend.api.deps import Event, Limit, Segment, Time, optional_time, read_access
from trend.api.errors import TrendRoute, error_responses
from trend.service import Trend
from trend.shapes import rising_shape, series_shape, top_shape

WindowName = Literal["5m", "15m", "1h", "6h", "24h", "7d"]


def router(trend: Trend) -> APIRouter:
    api = APIRouter(route_class=TrendRoute, tags=["trends"], dependencies=[read_access(trend)],
                    responses=error_responses(401, 403, 422, 503))
    zone = trend.settings.zone
    shapes = models.measure_models()
    # A series interval is one of this Trend's levels, and by= a measure that ranks; anything else is
    # a QueryError (422) from the query itself.
    interval_type = Annotated[str, Query(description="a rollup level",
                                         json_schema_extra={"enum": trend.levels.names})]
    by_type = Annotated[str, Query(description="the measure to rank by: events, or distinct users",
                                   json_schema_extra={"enum": measures.rankings()})]

    @api.get("/v1/series", response_model=shapes.series,
             summary="One point per bucket of the interval, zero-filled")
    async def series(event: Event, key: Annotated[list[str] | None, Query(max_length=256)] = None,
                     segment: Segment = None, interval: interval_type = "1m",
                     start: Time = None, end: Time = None,
                     compare: Annotated[Literal["previous"] | None, Query()] = None) -> dict[str, Any]:
        """``key`` repeated (up to 5) compares keys; ``compare=previous`` adds the period before."""
        keys = None if not key else (key[0] if len(key) == 1 else key)
        result = await run_in_threadpool(
            lambda: trend.series(event, key=keys, segment=segment, interval=interval,
                                 start_ms=optional_time("start", start), end_ms=optional_time("end", end),
                                 compare=compare))
        return series_shape(result, zone)

    @api.get("/v1/top", response_model=shapes.top,
             summary="Keys by count or users over a window ending at `at`, with rank change")
    async def top(event: Event, segment: Segment = None, window: WindowName = "1h", at: Time = None,
                  limit: Limit = 10, by: by_type = "count") -> dict[str, Any]:
        result = await run_in_threadpool(trend.top, event, segment=segment, window=window,
                                         at_ms=optional_time("at", at), limit=limit, by=by)
        return top_shape(result, zone)

    @api.get("/v1/rising", response_model=shapes.rising,
             summary="Keys by z-score against the windows before, with growth %")
    async def rising(event: Event, segment: Segment = None, window: WindowName = "15m",
                     baseline: Annotated[int, Query(ge=1, le=48)] = 12,
                     min_count: Annotated[int, Query(ge=1, le=1_000_000)] = 5, at: Time = None,
                     limit: Limit = 10, by: by_type = "count") -> dict[str, Any]:
        result = await run_in_threadpool(trend.rising, event, segment=segment, window=window, baseline=baseline,
                                         min_count=min_count, at_ms=optional_time("at", at), limit=limit, by=by)
        return rising_shape(result, zone)

    @api.get("/v1/dimensions", response_model=models.Dimensions,
             summary="Every event type and its segments, and the series intervals")
    async def dimensions() -> dict[str, Any]:
        known = await run_in_threadpool(trend.dimensions)
        return {"events": [{"event": event, "segments": segments} for event, segments in known.items()],
                "intervals": trend.levels.names, "rankings": measures.rankings(),
                "interval_limits": [{"interval": level.name, "seconds": level.width // 1000,
                                     "max_points": level.max_points} for level in trend.levels]}

    return api
