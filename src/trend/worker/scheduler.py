"""APScheduler wiring: the seed's cron jobs, its thread pool, and listeners for errors and misses.

Missed runs need no catch-up logic here: every run processes every dirty closed bucket.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from trend.config import JobSettings, Settings
from trend.logging import get_logger
from trend.model import ALERTS_JOB, Hierarchy
from trend.rollup.shell import OVERLAP_WARNING, RunReport

# APScheduler is loaded when a worker starts (about 80 ms): a CLI read or a process with the worker
# off never pays for it.
if TYPE_CHECKING:
    from apscheduler.events import JobEvent
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

log = get_logger("worker")

# A scheduled job: runs once, in a worker thread, and reports what it did.
Job = Callable[[], RunReport | list[RunReport]]


def trigger_for(job: JobSettings) -> CronTrigger:
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(second=job.second, minute=job.minute, hour=job.hour, timezone=UTC)


@dataclass(frozen=True)
class JobInfo:
    job: str
    enabled: bool
    schedule: str
    next_run: datetime | None


class Worker:
    """Owns a ``BackgroundScheduler``; ``start`` and ``stop`` may be called from any thread."""

    def __init__(self, settings: Settings, levels: Hierarchy, jobs: dict[str, Job], stopping: threading.Event) -> None:
        self.settings = settings
        self.levels = levels
        self.jobs = jobs
        self.stopping = stopping
        self._scheduler: BackgroundScheduler | None = None

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def start(self) -> None:
        if self.running:
            return
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.stopping.clear()
        scheduler = BackgroundScheduler(
            # Rollups keep the seed's pool; alerts wait on other people's servers, so they get a thread
            # of their own and a slow receiver never delays a rollup.
            executors={"default": ThreadPoolExecutor(max_workers=self.settings.worker_threads),
                       ALERTS_JOB: ThreadPoolExecutor(max_workers=1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.settings.misfire_grace_seconds,
            },
            timezone=UTC,
        )
        scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        for job_id, func in self.jobs.items():
            job = self.settings.job(job_id)
            if job.enabled:
                scheduler.add_job(func, trigger_for(job), id=job_id, name=job_id,
                                  executor=ALERTS_JOB if job_id == ALERTS_JOB else "default")
        scheduler.start()
        self._scheduler = scheduler
        log.info("worker started: %s", ", ".join(self._describe(job_id) for job_id in self.jobs))

    def stop(self, wait: bool = True) -> None:
        """Ask running jobs to stop after their current bucket, then wait for them."""
        self.stopping.set()
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
            log.info("worker stopped")
        self._scheduler = None
        if wait:
            # Every job has returned; runs started by hand from now on must not see a stop request.
            self.stopping.clear()

    def trigger(self, job_id: str) -> bool:
        """Make a scheduled job run now, on the worker's pool; False when the worker does not run it."""
        job = self._scheduler.get_job(job_id) if self._scheduler is not None else None
        if job is None:
            return False
        job.modify(next_run_time=datetime.now(UTC))
        return True

    def info(self) -> list[JobInfo]:
        result = []
        for job_id in self.jobs:
            job = self.settings.job(job_id)
            scheduled = self._scheduler.get_job(job_id) if self._scheduler is not None else None
            next_run = scheduled.next_run_time if scheduled is not None else None
            result.append(JobInfo(job_id, job.enabled, self._schedule(job), next_run))
        return result

    def _describe(self, job_id: str) -> str:
        job = self.settings.job(job_id)
        return f"{job_id} [{self._schedule(job)}]" if job.enabled else f"{job_id} [disabled]"

    @staticmethod
    def _schedule(job: JobSettings) -> str:
        return f"hour={job.hour} minute={job.minute} second={job.second} UTC"

    @staticmethod
    def _on_event(event: JobEvent) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning(OVERLAP_WARNING)
        elif event.code == EVENT_JOB_MISSED:
            log.warning("Run of %s due %s was missed; the next run catches up",
                        event.job_id, event.scheduled_run_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
        else:
            exception = getattr(event, "exception", None)
            log.error("Job %s failed: %r", event.job_id, exception)
