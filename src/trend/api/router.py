"""The whole API for one ``Trend``, as a router an app can mount under any prefix."""

from __future__ import annotations

from fastapi import APIRouter

from trend.api.admission import Admission
from trend.api.errors import trend_router
from trend.api.routes import alerts, docs, events, health, jobs, trends, web
from trend.service import Trend


def build_router(trend: Trend) -> APIRouter:
    api = trend_router(lifespan=docs.completing_host_schema(events.SCHEMAS))
    admission = Admission(trend.settings, trend.metrics.on_admission)
    for feature in (events, trends, alerts, jobs, health):
        api.include_router(feature.router(trend, admission))
    api.include_router(web.router())
    # Its own /docs and /openapi.json, under any prefix.
    api.include_router(docs.router(api, events.SCHEMAS, trend.settings))
    return api
