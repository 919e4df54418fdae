"""Run records: one row per job run, visible to every replica and kept across restarts.

A record in outcome ``running`` doubles as a lease: its runner bumps ``heartbeat_at`` while it works.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from trend.storage.shared.schema import job_runs
from trend.storage.shared.tx import Tx


@dataclass(frozen=True)
class RunRecord:
    job: str
    runner: str
    started: int
    finished: int | None
    outcome: str
    buckets: int
    rows: int
    error: str | None
    id: int | None = None
    heartbeat: int | None = None


def _record(row: object) -> RunRecord:
    r = row._mapping  # type: ignore[attr-defined]  # a SQLAlchemy Row
    return RunRecord(r["job"], r["runner"], r["started_at"], r["finished_at"], r["outcome"], r["buckets"],
                     r["rows"], r["error"], r["id"], r["heartbeat_at"])


def start_run(tx: Tx, job: str, runner: str, started: int) -> int:
    result = tx.execute(
        job_runs.insert().values(job=job, runner=runner, started_at=started, outcome="running", heartbeat_at=started)
    )
    key = result.inserted_primary_key
    assert key is not None  # an INSERT into a table with an autoincrement key always has one
    return int(key[0])


def heartbeat(tx: Tx, run_id: int, now: int) -> None:
    tx.execute(job_runs.update().where(job_runs.c.id == run_id).values(heartbeat_at=now))


def finish_run(tx: Tx, run_id: int, finished: int, outcome: str, buckets: int, rows: int,
               error: str | None) -> None:
    tx.execute(
        job_runs.update().where(job_runs.c.id == run_id).values(
            finished_at=finished, outcome=outcome, buckets=buckets, rows=rows, error=error
        )
    )


def record_run(tx: Tx, record: RunRecord) -> None:
    tx.execute(job_runs.insert().values(
        job=record.job, runner=record.runner, started_at=record.started, finished_at=record.finished,
        outcome=record.outcome, buckets=record.buckets, rows=record.rows, error=record.error,
    ))


def running(tx: Tx, job: str) -> list[RunRecord]:
    """The records of ``job`` still marked running, by any process."""
    query = select(job_runs).where(job_runs.c.job == job, job_runs.c.outcome == "running").order_by(job_runs.c.id)
    return [_record(row) for row in tx.execute(query)]


def close_as(tx: Tx, run_ids: list[int], outcome: str, finished: int, error: str) -> int:
    if not run_ids:
        return 0
    statement = job_runs.update().where(job_runs.c.id.in_(run_ids), job_runs.c.outcome == "running")
    return int(tx.execute(statement.values(outcome=outcome, finished_at=finished, error=error)).rowcount)


def latest_runs(tx: Tx) -> dict[str, RunRecord]:
    """The newest run of each job."""
    newest = select(func.max(job_runs.c.id)).group_by(job_runs.c.job).scalar_subquery()
    records = map(_record, tx.execute(select(job_runs).where(job_runs.c.id.in_(newest))))
    return {record.job: record for record in records}


def all_runs(tx: Tx, job: str | None = None) -> list[RunRecord]:
    query = select(job_runs).order_by(job_runs.c.id)
    if job is not None:
        query = query.where(job_runs.c.job == job)
    return [_record(row) for row in tx.execute(query)]
