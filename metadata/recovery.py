"""Recovery, the part of the one writer of job and item rows (with ``metadata.jobs`` and
``metadata.items``) that repairs what dead or lost runners left: expired leases back to
pending, a job with work and no live runner gets one, a job with nothing left completes.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing import ledger
from metadata import counts, items, jobs
from metadata.models import (
    ACTIVE_ITEM_STATES,
    FINAL_JOB_STATES,
    ItemState,
    JobItem,
    JobState,
    RegenerationJob,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    released: int  # expired leases put back to pending (or cancelled)
    requeued: list[int]  # jobs given a new runner
    completed: list[int]  # jobs whose last item was finished by a runner that then died


def recover(now: datetime | None = None) -> Recovery:
    """Expired leases back to pending; a job with work and no live runner gets one; a job
    with nothing left to do completes; no open item stays under a finished job.

    Runs every minute from the "mediaopt.recover" schedule and may be called directly.
    Safe to run anywhere at any time: every change is a conditional UPDATE.
    """
    now = now or timezone.now()
    # Items a cancel or failure left behind (a give-back that raced it): nobody works them.
    with transaction.atomic():
        rows = counts.update_returning(
            JobItem.objects.filter(
                Q(state=ItemState.PENDING) | Q(state=ItemState.CLAIMED, lease_expires_at__lt=now),
                job__state__in=FINAL_JOB_STATES,
            ),
            state=ItemState.CANCELLED,
            error="cancelled",
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
        )
        counts.moved_rows(rows)
    released = len(rows)
    # The attempt stays counted: a worker that died on this image used it up. The state is
    # decided in the same statement, so a cancel committing meanwhile still wins (and the
    # rows it returns say which items were cancelled, to count them).
    with transaction.atomic():
        rows = counts.update_returning(
            JobItem.objects.filter(state=ItemState.CLAIMED, lease_expires_at__lt=now),
            state=items.pending_unless_finished(),
            error=items.error_unless_finished(None),
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
        )
        counts.moved_rows(rows)
    released += len(rows)

    # Holds of workers that died between hold and capture: nothing is spent twice or lost.
    released_holds = ledger.release_expired(now=now)
    jobs.delete_stale_drafts(older_than=now - timedelta(days=1))
    jobs.fail_stale_preparing(older_than=now - timedelta(minutes=10))
    stale = now - timedelta(seconds=jobs.runner_stale_seconds())
    requeued: list[int] = []
    completed: list[int] = []
    for job in RegenerationJob.objects.unfinished():
        open_items = JobItem.objects.filter(job=job, state__in=ACTIVE_ITEM_STATES)
        if not open_items.exists():
            # Its last items were recorded after a pause, or its runner died or was lost
            # right after them: nobody would ever complete it.
            if job.state == JobState.QUEUED:
                with contextlib.suppress(jobs.IllegalTransition):
                    jobs.start(job)
            if job.state == JobState.RUNNING and jobs.complete_if_done(job):
                completed.append(job.pk)
            continue
        if not open_items.filter(state=ItemState.PENDING).exists():
            continue
        # Conditional, so two recoveries at once send one runner, not two.
        if (
            RegenerationJob.objects.filter(pk=job.pk)
            .filter(Q(runner_heartbeat__isnull=True) | Q(runner_heartbeat__lt=stale))
            .update(runner_heartbeat=now)
        ):
            requeued.append(job.pk)
            jobs.dispatch(job, now=now)
    if released or released_holds or requeued or completed:
        logger.info(
            "recover: %s lease(s) and %s hold(s) released, jobs %s re-enqueued, jobs %s completed",
            released,
            released_holds,
            requeued,
            completed,
        )
    return Recovery(released=released, requeued=requeued, completed=completed)
