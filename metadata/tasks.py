"""django-q2 entry points: ids in, jobs.py does the work (tasks stay this thin)."""

from __future__ import annotations

import logging

from metadata import jobs, revisions, runner

logger = logging.getLogger(__name__)


def run_job(job_id: int) -> None:
    runner.run_job(job_id=job_id)


def recover() -> None:
    jobs.recover()


def prune_revisions() -> int:
    removed = revisions.prune()
    logger.info("prune_revisions: %s revision(s) removed", removed)
    return removed
