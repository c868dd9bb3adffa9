"""django-q2 entry points: ids in, jobs.py does the work (tasks stay this thin)."""

from __future__ import annotations

from metadata import jobs


def run_job(job_id: int) -> None:
    jobs.run_job(job_id=job_id)


def recover() -> None:
    jobs.recover()
