"""The output shapes of DESIGN section 5, shared by HTTP and ``--json``. Add fields; never rename."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from trend.ingest import IngestResult
from trend.model import isoformat
from trend.rollup.runner import RunReport
from trend.rollup.service import LevelStatus
from trend.storage.runs import RunRecord


def _time(ms: int | None, zone: ZoneInfo) -> str | None:
    return None if ms is None else isoformat(ms, zone)


def rollup_shape(reports: Sequence[RunReport]) -> dict[str, Any]:
    return {"levels": [
        {"level": r.level, "outcome": r.outcome, "buckets": r.buckets, "rows": r.rows,
         "seconds": round(r.seconds, 6), "error": r.error}
        for r in reports
    ]}


def run_shape(run: RunRecord | None, zone: ZoneInfo) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"started": _time(run.started, zone), "finished": _time(run.finished, zone), "outcome": run.outcome,
            "buckets": run.buckets, "rows": run.rows, "error": run.error, "runner": run.runner}


def status_shape(statuses: Sequence[LevelStatus], zone: ZoneInfo) -> dict[str, Any]:
    return {"levels": [
        {"level": s.level, "dirty": s.backlog.dirty, "oldest_dirty": _time(s.backlog.oldest, zone),
         "lag_seconds": s.lag_ms / 1000, "last_run": run_shape(s.last_run, zone)}
        for s in statuses
    ]}


def ingest_shape(result: IngestResult, position_name: str = "index") -> dict[str, Any]:
    return {
        "accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected,
        "errors": [{position_name: p.position, "field": p.field, "message": p.message} for p in result.errors],
    }
