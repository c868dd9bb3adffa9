"""django-q2 entry points: ids in, jobs.py does the work (tasks stay this thin)."""

from __future__ import annotations

import logging
import uuid

from metadata import bulk, notifications, proposals, pruning, recovery, relint, revisions, runner
from metadata.models import Settings

logger = logging.getLogger(__name__)


def run_job(job_id: int, runner_token: str | None = None, slot: int = 0) -> None:
    token = uuid.UUID(runner_token) if runner_token else None
    runner.run_job(job_id=job_id, runner_token=token, slot=slot)


def prepare_job(job_id: int) -> None:
    bulk.prepare(job_id=job_id)


def recover() -> None:
    recovery.recover()


def prune_revisions() -> int:
    removed = revisions.prune()
    expired = proposals.expire(days=Settings.objects.current().revisions_keep_days)
    notifications.prune()
    items = pruning.prune_items()
    logger.info("prune_revisions: %s revision(s) removed", removed)
    if items:
        logger.info("prune_revisions: %s item(s) of old finished jobs removed", items)
    if expired:
        logger.info("prune_revisions: %s proposal(s) waited too long and expired", expired)
    return removed


def lint_library() -> int:
    run = relint.relint_library()
    logger.info("lint_library: %s image(s) checked, %s with errors", run.images, run.with_errors)
    return run.images
