"""Telling the person who started a long job that it completed, paused or failed: an
e-mail, and a notice shown once on their next admin page (the only writer of notices).

A job watched to its end (shorter than ``MEDIAOPT_NOTIFY_AFTER_SECONDS``) needs neither;
one left running in the background does. Called from the transitions in
``metadata.jobs`` once they commit, so a rolled-back move sends nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from metadata.models import ItemState, JobState, Notice, NoticeLevel, RegenerationJob

logger = logging.getLogger(__name__)

NOTIFIED_STATES = frozenset({JobState.COMPLETED, JobState.PAUSED, JobState.FAILED})
# Seen notices are kept a week (then deleted by the daily prune); one never seen, a month.
KEEP_SEEN = timedelta(days=7)
KEEP_UNSEEN = timedelta(days=30)


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


def notice_level(*, job: RegenerationJob) -> str:
    if job.state == JobState.FAILED:
        return NoticeLevel.ERROR
    if job.state == JobState.PAUSED or job.items.filter(state=ItemState.FAILED).exists():
        return NoticeLevel.WARNING
    return NoticeLevel.SUCCESS


def notify_transition(*, job_id: int) -> bool:
    """Tell the job's starter about the state it is in now: a notice for their next page
    (it replaces one about the same job not yet seen) and a mail if they have an address.
    True if a mail went out."""
    job = RegenerationJob.objects.select_related("created_by").filter(pk=job_id).first()
    if job is None or job.state not in NOTIFIED_STATES or not ran_long_enough(job=job):
        return False
    user = job.created_by
    if user is None:
        return False
    line = summary_line(job=job)
    Notice.objects.unseen().filter(user=user, job=job).delete()
    Notice.objects.create(user=user, job=job, level=notice_level(job=job), text=line[:500])
    if not user.email:
        return False
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


def take_unseen(*, user_id: int) -> list[Notice]:
    """The user's notices not shown yet, marked seen: each is returned to one page only.

    One query when nothing waits. A notice another page took meanwhile is left out (the
    conditional UPDATE is the claim).
    """
    waiting = list(Notice.objects.unseen().filter(user_id=user_id))
    now = timezone.now()
    return [
        notice
        for notice in waiting
        if Notice.objects.unseen().filter(pk=notice.pk).update(seen_at=now) == 1
    ]


def prune(*, now: datetime | None = None) -> int:
    """Delete notices seen more than a week ago and those never seen for a month."""
    now = now or timezone.now()
    deleted, _ = Notice.objects.filter(
        Q(seen_at__lt=now - KEEP_SEEN) | Q(seen_at__isnull=True, created_at__lt=now - KEEP_UNSEEN)
    ).delete()
    return deleted
