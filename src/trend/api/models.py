"""The HTTP API's answers as named schemas: what /openapi.json publishes and generated clients use.

Responses are built as plain dicts by ``trend.shapes`` (the CLI prints the same ones); these models
describe them, and FastAPI checks every answer against them. The request body's schemas (``Event``,
``EventBatch``) come from the validation model itself, in ``routes/events.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from trend import measures
from trend.measures import ITEM_FIELDS, Measure
from trend.query.windows import WINDOWS
from trend.rising import Score

SCORES = [score.value for score in Score]
_SCORE_ENUM: dict[str, Any] = {"enum": SCORES}

# ISO 8601 with the offset of TREND_TIMEZONE: a str here (the answers are built as text), a date-time
# in the schema, so generated clients parse it.
Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Accepted(BaseModel):
    accepted: int
    duplicates: int


class ErasedUser(BaseModel):
    user_id: str
    events: int = Field(description="Raw events deleted")
    minutes: int = Field(description="Minutes marked for recomputation")


class PreviousPeriod(BaseModel):
    start: Time
    end: Time


class TopItem(BaseModel):
    rank: int
    key: str
    count: int
    users: int | None
    prev_rank: int | None
    rank_change: int | None
    is_new: bool


class RisingItem(BaseModel):
    rank: int
    key: str
    count: int
    users: int | None
    baseline: float = Field(description="What the baseline windows lead one to expect now (zscore: their mean)")
    stddev: float = Field(description="The noise the score divides by")
    score: float
    growth_pct: float | None = Field(description="Against baseline; null for a breakout")
    breakout: bool = Field(False, description="Nothing in the baseline windows: new, or back after all of them")
    baseline_partial: bool = Field(description="The baseline reaches back before the oldest data held")


@dataclass(frozen=True)
class MeasureModels:
    """The schemas whose fields follow the measures (trend/measures.py): a series point has one field
    per measure shown, and ``by`` names a measure that ranks."""

    series: type[BaseModel]
    top: type[BaseModel]
    rising: type[BaseModel]


def _point_field(measure: Measure) -> tuple[Any, Any]:
    # A real measure without events (min, max) and distinct users before they were counted are null.
    kind: Any = {"integer": int, "real": float, "sketch": int}[measure.kind]
    if measure.empty is None or measure.is_sketch:
        kind = kind | None
    return kind, Field(description=measure.description or None)


@cache
def _measure_models(spec: tuple[Measure, ...]) -> MeasureModels:
    point = create_model("SeriesPoint", t=(Time, ...),
                         **{m.read_as: _point_field(m) for m in spec if m.shown})  # type: ignore[call-overload]
    line = create_model("SeriesLine", key=(str | None, ...), points=(list[point], ...),  # type: ignore[valid-type]
                        previous=(list[point] | None, Field(  # type: ignore[valid-type]
                            description="With compare=previous: the period before, aligned")))
    series = create_model(
        "Series", interval=(str, ...), start=(Time, ...), end=(Time, ...),
        key=(str | None, Field(description="The first key asked for (null: every key together)")),
        points=(list[point], Field(description="The first line's points")),  # type: ignore[valid-type]
        series=(list[line], Field(description="One line per key asked for")),  # type: ignore[valid-type]
        previous=(PreviousPeriod | None, ...))
    by = (str, Field(json_schema_extra={"enum": [m.read_as for m in spec if m.ranks]}))
    # Items carry every measure that ranks: count and users by name, any other as a field of its own.
    ranked = {m.read_as: _point_field(m) for m in spec if m.ranks and m.read_as not in ITEM_FIELDS}
    top_item = create_model("TopItem", __base__=TopItem, **ranked) if ranked else TopItem  # type: ignore[call-overload]
    rising_item = (create_model("RisingItem", __base__=RisingItem, **ranked)  # type: ignore[call-overload]
                   if ranked else RisingItem)
    top = create_model("Top", window=(str, ...), at=(Time, ...), start=(Time, ...), end=(Time, ...), by=by,
                       items=(list[top_item], ...))  # type: ignore[valid-type]
    rising = create_model("Rising", window=(str, ...), at=(Time, ...), start=(Time, ...), end=(Time, ...),
                          baseline_windows=(int, ...), by=by, baseline_partial=(bool, ...),
                          score=(str, Field(description="How keys were scored", json_schema_extra=_SCORE_ENUM)),
                          min_count=(int, ...),
                          below_min_count=(int | None, Field(description=(
                              "When fewer than limit keys are listed: how many keys have events now but fewer than "
                              "min_count"))),
                          items=(list[rising_item], ...))  # type: ignore[valid-type]
    return MeasureModels(series, top, rising)


def measure_models() -> MeasureModels:
    return _measure_models(measures.MEASURES)


class EventSegments(BaseModel):
    event: str
    segments: list[str]


class IntervalLimit(BaseModel):
    interval: str
    seconds: int = Field(description="The width of one point")
    max_points: int = Field(description="The most points one series at this interval may return")


class Dimensions(BaseModel):
    events: list[EventSegments] = Field(description="At most 500 event types, the first by code point, each "
                                                    "with at most 200 segments")
    truncated: bool = Field(False, description="Whether some event types or segments were left out")
    intervals: list[str]
    interval_limits: list[IntervalLimit]
    rankings: list[str] = Field(description="What top and rising may rank by (by=)")


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


class ClusterNode(BaseModel):
    host: str
    port: int
    role: Literal["coordinator", "worker"]
    reachable: bool
    shards: int = Field(description="shards of trend's tables on the node")
    prepared: int | None = Field(description="prepared transactions waiting on the node; null when it cannot be asked")
    error: str | None = None


class ClusterState(BaseModel):
    """A Citus cluster as its coordinator sees it; only on a distributed database."""

    healthy: bool
    nodes: list[ClusterNode]
    warnings: list[str]


class AlertsState(BaseModel):
    failing_rules: int = Field(description="Rules whose last evaluation failed (GET /v1/alerts says why)")


class Probe(BaseModel):
    status: Literal["alive", "ready", "unavailable"]


class FailingBucket(BaseModel):
    """A dirty bucket whose recompute the database refused: tried again at ``retry_at`` (a minute after
    the first failure, doubling up to an hour) while the rest of its level goes on."""

    level: str
    bucket: Time
    failures: int
    retry_at: Time
    error: str


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    worker: WorkerState
    database: Literal["ok", "unavailable"]
    lag_seconds: float | None = None
    failing_buckets: list[FailingBucket] | None = None
    alerts: AlertsState | None = None
    cluster: ClusterState | None = None


class AlertRuleIn(BaseModel):
    """A rule. ``rising``: keys whose ``score`` reaches ``min_score`` (default 5 for poisson, 3 for
    zscore) with at least ``min_count`` (default 5); ``enters_top``: keys entering the top ``top``;
    ``threshold``: ``key``'s value over the window crossing ``threshold`` upwards. Each fires for a key
    at most once per ``cooldown``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=128)
    event: str = Field(min_length=1, max_length=64)
    segment: str | None = Field(None, max_length=64)
    by: Literal["count", "users"] = "count"
    condition: Literal["rising", "enters_top", "threshold"]
    window: str = Field("15m", json_schema_extra={"enum": list(WINDOWS)})
    key: str | None = Field(None, max_length=256)
    min_score: float | None = Field(None, description="rising: the score to reach (5 for poisson, 3 for zscore)")
    min_count: int | None = Field(None, ge=1, le=10**12)
    score: str | None = Field(None, json_schema_extra=_SCORE_ENUM,
                              description="rising: poisson (the default) or zscore (the score of earlier releases)")
    top: int | None = Field(None, ge=1, le=100)
    threshold: int | None = Field(None, ge=1, le=10**15)
    url: str = Field(min_length=1, max_length=2048, description="The webhook: http:// or https://")
    secret: str | None = Field(None, min_length=16, max_length=256, description=(
        "The signing secret, made when omitted: an optional whsec_, then the base64 of at least 16 bytes "
        "(at least 22 characters of A-Z a-z 0-9 + /, as the Standard Webhooks libraries decode it)"))
    cooldown: str = Field("1h", max_length=32, description="A duration such as 15m, 1h or 1d, at most 365d")


class AlertRule(BaseModel):
    id: int
    name: str
    event: str
    segment: str | None
    by: str
    condition: str
    window: str
    key: str | None
    min_score: float | None
    min_count: int | None
    score: str | None = Field(None, description="A rising rule's score (poisson or zscore)")
    top: int | None
    threshold: int | None
    url: str = Field(description="The webhook; only its scheme and host unless the request holds the admin key "
                                 "(TREND_API_KEY), or none is set")
    cooldown_seconds: int
    created: Time
    last_error: str | None = Field(None, description="Why the rule's last evaluation failed; null once one succeeds")
    last_error_at: Time | None = None


class NewAlertRule(AlertRule):
    secret: str = Field(description="Shown this once: it signs every delivery (webhook-signature, Standard Webhooks)")
    warning: str | None = Field(None, description="e.g. the event is not stored yet: the rule fires for nothing "
                                                  "until it is")


class AlertRules(BaseModel):
    rules: list[AlertRule]


class Delivery(BaseModel):
    id: str
    rule_id: int
    key: str | None
    test: bool
    created: Time
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt: Time | None
    last_status: int | None = Field(description="The receiver's HTTP status; its body is never kept")
    last_error: str | None
    delivered: Time | None


class Deliveries(BaseModel):
    deliveries: list[Delivery]
