"""GET /v1/jobs and POST /v1/jobs/{job}/run, and GET /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from trend.api import models
from trend.api.admission import Admission
from trend.api.deps import read_access, write_access
from trend.api.errors import ApiError, error_responses, trend_router
from trend.metrics import CONTENT_TYPE
from trend.service import Trend
from trend.shapes import jobs_shape, rollup_shape


def router(trend: Trend, admission: Admission) -> APIRouter:
    api = trend_router(tags=["jobs"], responses=error_responses(401, 403, 503))

    @api.get("/v1/jobs", response_model=models.Jobs, dependencies=[read_access(trend), admission.read()],
             summary="The schedule, next run, last run and backlog of each job")
    async def list_jobs(request: Request) -> dict[str, Any]:
        async with admission.reading(request):
            statuses = await admission.run(admission.read_pool, trend.status)
            runs = await admission.run(admission.read_pool, trend.last_runs)
        return jobs_shape(trend.jobs(), statuses, runs, trend.settings.zone, trend.levels)

    @api.post("/v1/jobs/{job}/run", response_model=models.JobRun, dependencies=[write_access(trend)],
              responses=error_responses(404, 422),
              summary="Run a job now and wait for it (admin)")
    async def run_job(job: str) -> dict[str, Any]:
        if job not in trend.job_ids:
            raise ApiError(404, "unknown_job", f"unknown job {job!r}; jobs: {', '.join(trend.job_ids)}")
        reports = await run_in_threadpool(trend.run_job, job)
        return rollup_shape(reports)

    @api.get("/metrics", dependencies=[read_access(trend)], summary="Prometheus metrics",
             response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        body = await admission.run(admission.probe_pool, trend.metrics.render)  # a scrape is a probe
        return Response(body, media_type=CONTENT_TYPE)

    return api
