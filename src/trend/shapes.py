"""The output shapes shared by HTTP and ``--json`` (the README and docs/queries.md show them). Add fields;
never rename."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from trend import measures
from trend.model import Hierarchy, isoformat
from trend.query.trends import Rising, Series, Top
from trend.storage.read.cluster import Cluster
from trend.storage.read.reads import Point
from trend.storage.shared.markers import Failing
from trend.storage.write.runs import RunRecord

if TYPE_CHECKING:  # only annotations: `trend top` loads none of the writing parts
    from trend.ingest import IngestResult
    from trend.rollup.service import LevelStatus
    from trend.rollup.shell import RunReport
    from trend.worker.scheduler import JobInfo


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


def status_shape(statuses: Sequence[LevelStatus], zone: ZoneInfo, database: Mapping[str, str],
                 cluster: Cluster | None = None) -> dict[str, Any]:
    shape: dict[str, Any] = {"database": dict(database), "levels": [
        {"level": s.level, "dirty": s.backlog.dirty, "oldest_dirty": _time(s.backlog.oldest, zone),
         "lag_seconds": s.lag_ms / 1000, "last_run": run_shape(s.last_run, zone)}
        for s in statuses
    ]}
    if cluster is not None:
        shape["cluster"] = cluster_shape(cluster)
    return shape


def failing_shape(failing: Failing, zone: ZoneInfo) -> dict[str, Any]:
    return {"level": failing.level, "bucket": isoformat(failing.bucket, zone), "failures": failing.failures,
            "retry_at": isoformat(failing.retry_at, zone), "error": failing.error}


def cluster_shape(cluster: Cluster) -> dict[str, Any]:
    return {"healthy": cluster.healthy, "nodes": [asdict(node) for node in cluster.nodes],
            "warnings": list(cluster.warnings)}


def ingest_shape(result: IngestResult, position_name: str = "index") -> dict[str, Any]:
    return {
        "accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected,
        "errors": [{position_name: p.position, "field": p.field, "message": p.message} for p in result.errors],
    }


def _points_shape(found: Sequence[Point], zone: ZoneInfo) -> list[dict[str, Any]]:
    shown = measures.shown()
    return [{"t": isoformat(p.bucket, zone), **{m.read_as: _json_number(p.measures[m.column]) for m in shown}}
            for p in found]


def _json_number(value: Any) -> Any:
    """JSON has no infinity: a sum that overflowed (events stored before values were bounded) is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def series_shape(series: Series, zone: ZoneInfo) -> dict[str, Any]:
    """``key`` and ``points`` are the first line (the whole answer for one key or none); ``series``
    holds every line, each with ``previous`` when compared with the period before."""
    shape: dict[str, Any] = {
        "interval": series.interval, "start": isoformat(series.start, zone), "end": isoformat(series.end, zone),
        "key": series.lines[0].key, "points": _points_shape(series.points, zone),
        "series": [{"key": line.key, "points": _points_shape(line.points, zone),
                    "previous": None if line.previous is None else _points_shape(line.previous, zone)}
                   for line in series.lines],
        "previous": None,
    }
    if series.compare:
        shape["previous"] = {"start": isoformat(series.previous_start, zone), "end": isoformat(series.start, zone)}
    return shape


def top_shape(top: Top, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "window": top.window, "at": isoformat(top.at, zone), "start": isoformat(top.start, zone),
        "end": isoformat(top.end, zone), "by": top.by,
        "items": [{"rank": i.rank, "key": i.key, "count": i.count, "users": i.users, **i.measures,
                   "prev_rank": i.prev_rank, "rank_change": i.rank_change, "is_new": i.is_new} for i in top.items],
    }


def rising_shape(rising: Rising, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "window": rising.window, "at": isoformat(rising.at, zone), "start": isoformat(rising.start, zone),
        "end": isoformat(rising.end, zone), "baseline_windows": rising.baseline_windows, "by": rising.by,
        "score": rising.score, "min_count": rising.min_count, "below_min_count": rising.below_min_count,
        "baseline_partial": rising.baseline_partial,
        "items": [{"rank": i.rank, "key": i.key, "count": i.count, "users": i.users, **i.measures,
                   "baseline": round(i.baseline, 6),
                   "stddev": round(i.stddev, 6), "score": round(i.score, 6),
                   "growth_pct": None if i.growth_pct is None else round(i.growth_pct, 3),
                   "breakout": i.breakout, "baseline_partial": i.baseline_partial}
                  for i in rising.items],
    }


def jobs_shape(jobs: Sequence[JobInfo], statuses: Sequence[LevelStatus], runs: Mapping[str, RunRecord],
               zone: ZoneInfo, levels: Hierarchy) -> dict[str, Any]:
    by_job = {levels.by_name[s.level].job: s for s in statuses}
    result = []
    for job in jobs:
        status = by_job.get(job.job)
        level = levels.by_job(job.job)
        result.append({
            "job": job.job, "enabled": job.enabled, "schedule": job.schedule,
            "next_run": job.next_run.astimezone(zone).isoformat(timespec="seconds") if job.next_run else None,
            "last_run": run_shape(runs.get(job.job), zone),
            "level": level.name if level else None,
            "backlog": status.backlog.dirty if status else None,
            "oldest_dirty": _time(status.backlog.oldest, zone) if status else None,
            "lag_seconds": status.lag_ms / 1000 if status else None,
        })
    return {"jobs": result}


def delivery_shape(row: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    return {"id": row["id"], "rule_id": row["rule_id"], "key": row["key"], "test": bool(row["test"]),
            "created": isoformat(row["created_at"], zone), "status": row["status"], "attempts": row["attempts"],
            "next_attempt": isoformat(row["next_attempt_at"], zone) if row["status"] == "pending" else None,
            "last_status": row["last_status"], "last_error": row["last_error"],
            "delivered": _time(row["delivered_at"], zone)}


def rule_shape(rule: dict[str, Any], zone: ZoneInfo, *, full_url: bool = True) -> dict[str, Any]:
    """A rule as shown; without ``full_url`` its webhook is only its scheme and host, because the path,
    the query and the user info often hold a token (a Slack webhook's does)."""
    failed_at = rule.get("last_error_at")
    return {**{k: v for k, v in rule.items() if k not in ("created_at", "last_error_at")},
            "url": rule["url"] if full_url else origin_of(rule["url"]),
            "created": isoformat(rule["created_at"], zone),
            "last_error_at": None if failed_at is None else isoformat(failed_at, zone)}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what a reader may see of a webhook."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
