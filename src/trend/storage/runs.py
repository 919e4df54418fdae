"""Run records: one row per job run, visible to every replica and kept across restarts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from trend.storage.schema import job_runs


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


def start_run(conn: Connection, job: str, runner: str, started: int) -> int:
    result = conn.execute(
        job_runs.insert().values(job=job, runner=runner, started_at=started, outcome="running")
    )
    key = result.inserted_primary_key
    assert key is not None  # an INSERT into a table with an autoincrement key always has one
    return int(key[0])


def finish_run(conn: Connection, run_id: int, finished: int, outcome: str, buckets: int, rows: int,
               error: str | None) -> None:
    conn.execute(
        job_runs.update().where(job_runs.c.id == run_id).values(
            finished_at=finished, outcome=outcome, buckets=buckets, rows=rows, error=error
        )
    )


def record_run(conn: Connection, record: RunRecord) -> None:
    conn.execute(job_runs.insert().values(
        job=record.job, runner=record.runner, started_at=record.started, finished_at=record.finished,
        outcome=record.outcome, buckets=record.buckets, rows=record.rows, error=record.error,
    ))


def latest_runs(conn: Connection) -> dict[str, RunRecord]:
    """The newest run of each job."""
    newest = select(func.max(job_runs.c.id)).group_by(job_runs.c.job).scalar_subquery()
    rows = conn.execute(select(job_runs).where(job_runs.c.id.in_(newest))).all()
    return {
        row.job: RunRecord(row.job, row.runner, row.started_at, row.finished_at, row.outcome, row.buckets,
                           row.rows, row.error)
        for row in rows
    }


def all_runs(conn: Connection, job: str | None = None) -> list[RunRecord]:
    query = select(job_runs).order_by(job_runs.c.id)
    if job is not None:
        query = query.where(job_runs.c.job == job)
    return [
        RunRecord(row.job, row.runner, row.started_at, row.finished_at, row.outcome, row.buckets, row.rows,
                  row.error)
        for row in conn.execute(query)
    ]
