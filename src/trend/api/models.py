"""The HTTP API's answers as named schemas: what /openapi.json publishes and generated clients use.

Responses are built as plain dicts by ``trend.shapes`` (the CLI prints the same ones); these models
describe them, and FastAPI checks every answer against them. The request body's schemas (``Event``,
``EventBatch``) come from the validation model itself, in ``routes/events.py``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Time = str  # ISO 8601 with the offset of TREND_TIMEZONE


class Accepted(BaseModel):
    accepted: int
    duplicates: int


class ErasedUser(BaseModel):
    user_id: str
    events: int = Field(description="Raw events deleted")
    minutes: int = Field(description="Minutes marked for recomputation")


class SeriesPoint(BaseModel):
    t: Time
    count: int
    sum: float
    min: float | None
    max: float | None
    users: int | None = Field(description="Distinct users; null before users were counted")


class Series(BaseModel):
    interval: str
    start: Time
    end: Time
    key: str | None
    points: list[SeriesPoint]


class TopItem(BaseModel):
    rank: int
    key: str
    count: int
    users: int | None
    prev_rank: int | None
    rank_change: int | None
    is_new: bool


class Top(BaseModel):
    window: str
    at: Time
    start: Time
    end: Time
    by: Literal["count", "users"]
    items: list[TopItem]


class RisingItem(BaseModel):
    rank: int
    key: str
    count: int
    users: int | None
    baseline: float
    stddev: float
    score: float
    growth_pct: float


class Rising(BaseModel):
    window: str
    at: Time
    start: Time
    end: Time
    baseline_windows: int
    by: Literal["count", "users"]
    items: list[RisingItem]


class EventSegments(BaseModel):
    event: str
    segments: list[str]


class Dimensions(BaseModel):
    events: list[EventSegments]
    intervals: list[str]


class RunRecord(BaseModel):
    started: Time | None
    finished: Time | None
    outcome: str
    buckets: int
    rows: int
    error: str | None
    runner: str


class Job(BaseModel):
    job: str
    enabled: bool
    schedule: str
    next_run: Time | None
    last_run: RunRecord | None
    level: str | None
    backlog: int | None
    oldest_dirty: Time | None
    lag_seconds: float | None


class Jobs(BaseModel):
    jobs: list[Job]


class LevelRun(BaseModel):
    level: str
    outcome: str
    buckets: int
    rows: int
    seconds: float
    error: str | None


class JobRun(BaseModel):
    levels: list[LevelRun]


class WorkerState(BaseModel):
    enabled: bool
    running: bool


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    worker: WorkerState
    database: Literal["ok", "unavailable"]
    lag_seconds: float | None = None
