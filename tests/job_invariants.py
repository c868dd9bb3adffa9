"""The job engine's invariants, checked after every job test (the ``job_invariants``
fixture in tests/conftest.py):

- no pending item under a finished (completed, cancelled, failed) job, ever;
- an item's attempts never exceed the claims it had during the test;
- every job row's counts (items_total, items_succeeded, ...) equal the real counts of its
  items per state, unless retention pruned its items: every writer keeps them;
- every queued or running job has a runner or is recoverable: after recover() (as run
  an hour later, then rolled back) no job with work is left without a runner sent to
  it, none sits finished-but-not-completed, and no open item is left under a finished job.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from metadata import items, jobs, recovery
from metadata.models import (
    ACTIVE_ITEM_STATES,
    COUNT_COLUMNS,
    FINAL_JOB_STATES,
    ItemState,
    JobItem,
    RegenerationJob,
)


class ClaimLog:
    """How often each item was claimed during the test, and its attempts before the first."""

    def __init__(self) -> None:
        self.claims: Counter[int] = Counter()
        self.base: dict[int, int] = {}

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> ClaimLog:
        log = cls()
        real_claim = items.claim

        def claim(**kwargs):
            batch = real_claim(**kwargs)
            counted = 1 if kwargs.get("count_attempt") else 0
            for item in batch:
                log.base.setdefault(item.id, item.attempts - counted)
                log.claims[item.id] += 1
            return batch

        monkeypatch.setattr(items, "claim", claim)
        return log


def miscounted() -> list[str]:
    """Jobs whose row's counts differ from their items' (pruned jobs have no items left).

    The items and the job rows are read from one snapshot: a runner still at work (a
    cluster finishing its last call) commits an item and its job's count together, and
    two reads on either side of that commit would disagree though the data never did.
    """
    outermost = not connection.in_atomic_block  # else the test's own transaction
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # On SQLite the IMMEDIATE transaction excludes writers until it ends.
        return _miscounted()


def _miscounted() -> list[str]:
    real: dict[int, Counter[str]] = {}
    rows = JobItem.objects.order_by().values("job_id", "state").annotate(n=Count("id"))
    for row in rows:
        real.setdefault(row["job_id"], Counter())[row["state"]] = row["n"]
    found: list[str] = []
    for job in RegenerationJob.objects.filter(items_pruned_at__isnull=True):
        items_of = real.get(job.pk, Counter())
        kept = {"total": job.items_total} | {
            state: getattr(job, column) for state, column in COUNT_COLUMNS.items()
        }
        counted = {"total": sum(items_of.values())} | {
            state: items_of[state] for state in COUNT_COLUMNS
        }
        if kept != counted:
            found.append(f"job {job.pk} counts {kept} on its row, its items say {counted}")
    return found


def violations(log: ClaimLog) -> list[str]:
    found: list[str] = []
    stranded = JobItem.objects.filter(state=ItemState.PENDING, job__state__in=FINAL_JOB_STATES)
    found += [
        f"pending item {pk} under a finished job" for pk in stranded.values_list("pk", flat=True)
    ]
    found += miscounted()
    attempts = dict(JobItem.objects.filter(pk__in=list(log.claims)).values_list("pk", "attempts"))
    for item_id, claims in log.claims.items():
        spent = attempts.get(item_id, 0) - log.base[item_id]
        if spent > claims:
            found.append(f"item {item_id}: {spent} attempts counted in {claims} claims")

    later = timezone.now() + timedelta(hours=1)
    with transaction.atomic():
        sent: list[int] = []
        real_dispatch = jobs.dispatch

        def dispatch(job, *, now=None):
            sent.append(job.pk)
            real_dispatch(job, now=now)  # on commit only: rolled back with the rest

        jobs.dispatch = dispatch
        try:
            recovery.recover(now=later)
        finally:
            jobs.dispatch = real_dispatch
        for pk in RegenerationJob.objects.unfinished().values_list("pk", flat=True):
            if pk not in sent:
                found.append(f"job {pk} is unfinished with no runner, and recover() left it")
        found += [f"after recover(): {problem}" for problem in miscounted()]
        left = JobItem.objects.filter(state__in=ACTIVE_ITEM_STATES, job__state__in=FINAL_JOB_STATES)
        found += [
            f"open item {pk} under a finished job after recover()"
            for pk in left.values_list("pk", flat=True)
        ]
        transaction.set_rollback(True)
    return found
