"""Telling the person who started a long job that it completed, paused or failed.

A job watched to its end (shorter than ``MEDIAOPT_NOTIFY_AFTER_SECONDS``) needs no mail;
one left running in the background does. Called from the transitions in
``metadata.jobs`` once they commit, so a rolled-back move sends nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from metadata.models import JobState, RegenerationJob

logger = logging.getLogger(__name__)

NOTIFIED_STATES = frozenset({JobState.COMPLETED, JobState.PAUSED, JobState.FAILED})


def ran_long_enough(*, job: RegenerationJob) -> bool:
    if job.started_at is None:
        return False
    end = job.finished_at or timezone.now()
    return end - job.started_at >= timedelta(seconds=settings.MEDIAOPT_NOTIFY_AFTER_SECONDS)


def summary_line(*, job: RegenerationJob) -> str:
    """ "Job #7 completed: 38 succeeded, 2 failed" — the subject and the first line."""
    # The job row's counts (metadata.counts): no count over its items.
    parts = [
        f"{n} {label}"
        for n, label in (
            (job.items_succeeded, "succeeded"),
            (job.items_failed, "failed"),
            (job.items_skipped, "skipped"),
        )
        if n
    ]
    line = f"Job #{job.pk} {job.get_state_display().lower()}"
    if job.state == JobState.PAUSED and job.pause_reason:
        line += f" ({job.pause_reason})"
    if job.state == JobState.FAILED and job.error:
        line += f" ({job.error})"
    return f"{line}: {', '.join(parts)}" if parts else line


def notify_transition(*, job_id: int) -> bool:
    """Mail the job's starter about the state it is in now. True if a mail went out."""
    job = RegenerationJob.objects.select_related("created_by").filter(pk=job_id).first()
    if job is None or job.state not in NOTIFIED_STATES or not ran_long_enough(job=job):
        return False
    user = job.created_by
    if user is None or not user.email:
        return False
    line = summary_line(job=job)
    try:
        send_mail(
            subject=line,
            message=f"{line}.\n",
            from_email=None,
            recipient_list=[user.email],
        )
    except OSError:
        # A mail server that is down must not stop a runner or a recovery.
        logger.warning("job %s: the notification to %s could not be sent", job_id, user.email)
        return False
    return True
