from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from trend.api.admission import Admission
from trend.api.errors import trend_router
from trend.api.models import Health, Probe
from trend.errors import StorageError
from trend.service import Trend
from trend.shapes import cluster_shape, failing_shape

T = TypeVar("T")


def router(trend: Trend, admission: Admission) -> APIRouter:
    api = trend_router(tags=["health"])

    async def off_loop(call: Callable[[], T]) -> T:
        """On the probes' own threads: a pool busy with reads never delays a probe."""
        return await admission.run(admission.probe_pool, call)

    @api.get("/healthz", summary="The database (on Citus, every node), the worker, and the oldest dirty bucket's lag",
             response_model=Health,
             responses={200: {"description": "Healthy or degraded"},
                        503: {"model": Health, "description": "The database, or a Citus node, unavailable"}})
    async def healthz() -> JSONResponse:
        body: dict[str, Any] = {"worker": {"enabled": trend.settings.worker_enabled, "running": trend.worker_running}}
        try:
            body["lag_seconds"] = await off_loop(trend.lag_seconds)
            body["failing_buckets"] = [failing_shape(f, trend.settings.zone)
                                       for f in await off_loop(trend.failing_buckets)]
            body["alerts"] = {"failing_rules": await off_loop(trend.alerts.failing_rules)}
            cluster = await off_loop(trend.cluster)
            body["database"] = "ok"
        except StorageError:
            body["database"] = "unavailable"
            return JSONResponse({"status": "unavailable", **body}, 503)
        if cluster is not None:
            body["cluster"] = cluster_shape(cluster)
            waits = trend.db.dialect.barrier
            body["cluster"]["barrier"] = {"runs_waited": waits.waits, "longest_wait_seconds": round(waits.longest_s, 3),
                                          "timeouts": waits.timeouts,
                                          "timeout_seconds": waits.timeout_s}
            if not cluster.healthy:
                # A node that does not answer fails every read and write that needs its shards.
                body["database"] = "unavailable"
                return JSONResponse({"status": "unavailable", **body}, 503)
        # A rule or a bucket that fails is a job not doing all of its work: degraded, still serving.
        healthy = ((not trend.settings.worker_enabled or trend.worker_running) and not body["alerts"]["failing_rules"]
                   and not body["failing_buckets"])
        return JSONResponse({"status": "ok" if healthy else "degraded", **body}, 200)

    # Probes for an orchestrator. Liveness says only that this process answers, so a database outage
    # never restarts every pod; readiness says whether it can serve now. HEAD answers as GET does.
    @api.get("/livez", response_model=Probe,
             summary="Liveness: 200 while this process answers, whatever the database")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @api.get("/readyz", response_model=Probe,
             responses={503: {"model": Probe, "description": "The database, or a Citus node, unavailable"}},
             summary="Readiness: 200 when the database answers, 503 while it (or a Citus node) does not")
    async def readyz() -> JSONResponse:
        try:
            cluster = await off_loop(trend.cluster)
            await off_loop(trend.ping)  # one round trip: probes come every few seconds
        except StorageError:
            return JSONResponse({"status": "unavailable"}, 503)
        if cluster is not None and not cluster.healthy:
            return JSONResponse({"status": "unavailable"}, 503)
        return JSONResponse({"status": "ready"}, 200)

    # HEAD answers as GET does (a probe that sends HEAD), and stays out of the schema: one operation each.
    for path, probe in (("/healthz", healthz), ("/livez", livez), ("/readyz", readyz)):
        api.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)
    return api
