"""Retention of job items: part of the one writer of job and item rows. The items of a job
finished longer ago than the settings page's retention (revisions_keep_days, the same
days as revisions) are deleted in batches of short transactions, nightly with the
revisions (tasks.prune_revisions). Their counts stay on the job row (metadata.counts);
``items_pruned_at`` tells the job's page, its failures list and the job invariants that
the item list is gone on purpose.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from metadata.models import FINAL_JOB_STATES, JobItem, RegenerationJob, Settings

BATCH = 5_000


def prunable_jobs(*, days: int, now: datetime | None = None):
    """Finished jobs older than ``days`` with items left: not yet pruned, or pruned by a
    run that stopped before its last batch."""
    if days < 1:
        raise ValueError("Retention keeps job items for at least one day.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return RegenerationJob.objects.filter(
        Q(items_pruned_at__isnull=True) | Exists(JobItem.objects.filter(job_id=OuterRef("pk"))),
        state__in=FINAL_JOB_STATES,
        finished_at__lt=cutoff,
    )


def prune_items(*, days: int | None = None, now: datetime | None = None, batch: int = BATCH) -> int:
    """Delete the items of finished jobs older than ``days`` (the settings page's retention
    by default), ``batch`` at a time; how many went. Each job is marked pruned first, in
    its own transaction, so a page never shows a job half pruned as if it were whole."""
    if days is None:
        days = Settings.objects.current().revisions_keep_days
    now = now or timezone.now()
    removed = 0
    for job_id in prunable_jobs(days=days, now=now).values_list("pk", flat=True):
        RegenerationJob.objects.filter(pk=job_id, items_pruned_at__isnull=True).update(
            items_pruned_at=now
        )
        while True:
            with transaction.atomic():
                ids = list(
                    JobItem.objects.filter(job_id=job_id).values_list("pk", flat=True)[:batch]
                )
                if not ids:
                    break
                # No signal or relation points at an item: one DELETE, nothing fetched.
                removed += JobItem.objects.filter(pk__in=ids).delete()[0]
    return removed
