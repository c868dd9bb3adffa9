"""A job's extra runners: slots 1 to ``MEDIAOPT_JOB_RUNNERS - 1`` beside the runner the job
row names (jobs.take_over). The only writer of RunnerSlot rows.

The job's first runner fills the free slots when it starts (after each hand-over too); a
slot is free when nobody holds it or its heartbeat is older than runner_stale_seconds().
An extra runner works the job exactly as the first does: it claims items under leases of
its own (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so runners take disjoint items without
waiting for each other), asks the one shared limiter before each call, beats on its slot
and reads the job's state, and stops when the job stops running or has nothing left to
claim; at its time budget it hands its slot to a new task. It never starts, completes
alone or takes over the job: the first runner does (and any runner may complete it).

One that dies leaves its items to their leases (recover() gives them back) and its slot
to go stale, refilled at the first runner's next start. On a cluster only: a job worked
inline or in sync mode has its one runner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from metadata import jobs
from metadata.models import RegenerationJob, RunnerSlot


@dataclass(frozen=True)
class Seat:
    """Where a runner sits: the job's first runner (slot 0: its token is on the job row,
    jobs.take_over) or an extra one (its slot's row). The token proves it; once another
    runner took the seat, its heartbeat answers None and it stops."""

    job_id: int
    token: uuid.UUID
    slot: int = 0

    def heartbeat(self, *, touch: bool = True) -> str | None:
        """The job's state, this runner's heartbeat written (``touch``)."""
        if self.slot:
            return heartbeat(job_id=self.job_id, slot=self.slot, token=self.token, touch=touch)
        return jobs.heartbeat(job_id=self.job_id, runner_token=self.token, touch=touch)

    def hand_over(self, job: RegenerationJob) -> bool:
        """Give the seat to a new task (this runner's time is up); False if it was lost."""
        if self.slot:
            return hand_over(job, slot=self.slot, token=self.token)
        jobs.dispatch(job)
        return True

    def let_go(self) -> None:
        """A runner that stops frees its seat."""
        if self.slot:
            let_go(job_id=self.job_id, slot=self.slot, token=self.token)
        else:
            jobs.let_go_of_job(job_id=self.job_id, runner_token=self.token)


def take_seat(*, job_id: int, slot: int, dispatched: uuid.UUID | None, force: bool) -> Seat | None:
    """The seat a delivered task was sent to (slot 0: the job's first runner, which a
    process working the job inline, ``force``, takes in any case); None: exit at once."""
    if slot:
        token = take(job_id=job_id, slot=slot, dispatched=dispatched)
    else:
        token = jobs.take_over(job_id=job_id, dispatched=dispatched, force=force)
    return None if token is None else Seat(job_id=job_id, token=token, slot=slot)


def runners() -> int:
    """How many runners work one job at once (``MEDIAOPT_JOB_RUNNERS``)."""
    return max(1, int(settings.MEDIAOPT_JOB_RUNNERS))


def fill(job: RegenerationJob, *, now: datetime | None = None) -> list[int]:
    """Dispatch a task to each free slot of ``job``; the slots dispatched."""
    wanted = runners()
    if wanted <= 1:
        return []
    now = now or timezone.now()
    RunnerSlot.objects.bulk_create(
        [RunnerSlot(job_id=job.pk, slot=slot) for slot in range(1, wanted)],
        ignore_conflicts=True,  # made once; a concurrent fill made the same rows
    )
    stale = now - timedelta(seconds=jobs.runner_stale_seconds())
    free = Q(token__isnull=True) | Q(heartbeat__isnull=True) | Q(heartbeat__lt=stale)
    dispatched = []
    for slot in range(1, wanted):
        token = uuid.uuid4()
        # Conditional: of two fills at once, one names the slot's runner.
        if RunnerSlot.objects.filter(free, job_id=job.pk, slot=slot).update(
            token=token, heartbeat=now
        ):
            jobs.send_runner(job, token=token, slot=slot)
            dispatched.append(slot)
    return dispatched


def hand_over(job: RegenerationJob, *, slot: int, token: uuid.UUID) -> bool:
    """The runner ``token`` of ``slot`` gives its slot to a new task (its time is up)."""
    new = uuid.uuid4()
    if not RunnerSlot.objects.filter(job_id=job.pk, slot=slot, token=token).update(
        token=new, heartbeat=timezone.now()
    ):
        return False
    jobs.send_runner(job, token=new, slot=slot)
    return True


def take(*, job_id: int, slot: int, dispatched: uuid.UUID | None) -> uuid.UUID | None:
    """Hold ``slot`` with the token the task was dispatched with; a new token of this
    runner's own, or None (a second delivery, an older task): exit at once."""
    if dispatched is None:
        return None
    mine = uuid.uuid4()
    taken = RunnerSlot.objects.filter(job_id=job_id, slot=slot, token=dispatched).update(
        token=mine, heartbeat=timezone.now()
    )
    return mine if taken else None


def heartbeat(*, job_id: int, slot: int, token: uuid.UUID, touch: bool = True) -> str | None:
    """Say this extra runner is alive (unless ``touch`` is False); the job's state, or None
    once the slot is another runner's (this one must stop)."""
    if touch and not RunnerSlot.objects.filter(job_id=job_id, slot=slot, token=token).update(
        heartbeat=timezone.now()
    ):
        return None
    return RegenerationJob.objects.filter(pk=job_id).values_list("state", flat=True).first()


def let_go(*, job_id: int, slot: int, token: uuid.UUID) -> None:
    """An extra runner that stops frees its slot for the first runner's next fill."""
    RunnerSlot.objects.filter(job_id=job_id, slot=slot, token=token).update(
        token=None, heartbeat=None
    )
