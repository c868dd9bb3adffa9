"""The job half of the one writer of job and item rows (with ``metadata.items``, which
writes an item's claim, lease and result, and ``metadata.recovery``): create, enqueue,
pause, resume, cancel, fail, complete, retry the failed, and the runner's hold on a job.

Every transition is a conditional UPDATE on the state it starts from (checked against the
tables below first, so a caller's mistake raises IllegalTransition and moves nothing).
The job and item rows are the truth; django-q2 only carries "run job J", and may lose it
(Redis) or deliver it twice (ORM): a runner is idempotent and recovery.recover() replaces
a lost one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet, Subquery
from django.utils import timezone

from billing.models import Account
from mediaopt.library.models import MediaAsset
from metadata import counts
from metadata.models import ItemState, JobItem, JobKind, JobQueue, JobState, RegenerationJob

logger = logging.getLogger(__name__)

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobState.DRAFT: frozenset(
        {JobState.PREPARING, JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}
    ),
    # Confirmed: its items are being added in chunks; queued when they all are.
    JobState.PREPARING: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.PAUSED, JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED}
    ),
    # Resume goes back through queued: a runner then takes it to running.
    JobState.PAUSED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.COMPLETED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    """A state change that the tables above refuse, or whose start state has moved on."""


# -- tuning (mediaopt/settings.py declares and documents each) ----------------------------


def lease_seconds() -> float:
    return float(settings.MEDIAOPT_JOB_LEASE_SECONDS)


def max_attempts() -> int:
    return int(settings.MEDIAOPT_JOB_MAX_ATTEMPTS)


def batch_size() -> int:
    return int(settings.MEDIAOPT_JOB_BATCH_SIZE)


def run_budget_seconds() -> float:
    """A runner hands over (re-enqueues itself) after this long, well inside Q timeout."""
    return float(settings.MEDIAOPT_JOB_RUN_SECONDS)


def max_sleep_seconds() -> float:
    return float(settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS)


def runner_stale_seconds() -> float:
    """A heartbeat older than this means no runner is working the job."""
    return float(settings.MEDIAOPT_JOB_RUNNER_STALE_SECONDS)


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCreation:
    job: RegenerationJob
    busy_count: int  # assets skipped because another job holds them


# -- job transitions ---------------------------------------------------------------------


def _check_job(current: str, target: str, job_id: int) -> None:
    if target not in JOB_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"Job {job_id} cannot go from {current} to {target}.")


def _move_job(job: RegenerationJob, *, to: str, sources: set[str], **fields) -> None:
    """Move ``job`` to ``to`` from one of ``sources`` with one conditional UPDATE."""
    job.refresh_from_db(fields=["state"])
    _check_job(job.state, to, job.pk)
    allowed = {state for state in sources if to in JOB_TRANSITIONS[state]}
    now = timezone.now()
    moved = RegenerationJob.objects.filter(pk=job.pk, state__in=allowed).update(
        state=to, updated_at=now, **fields
    )
    if moved != 1:
        job.refresh_from_db(fields=["state"])
        raise IllegalTransition(f"Job {job.pk} moved to {job.state} meanwhile; not {to}.")
    job.refresh_from_db()


def _notify_on_commit(job: RegenerationJob) -> None:
    from metadata import notifications

    job_id = job.pk
    transaction.on_commit(lambda: notifications.notify_transition(job_id=job_id))


def dispatch(job: RegenerationJob, *, now: datetime | None = None) -> None:
    """Hand "run job J" to the job's cluster once the current transaction commits.

    The heartbeat is touched now, so recover() does not send a second runner while this
    one waits in the queue; the task carries a new runner token, so only it may take the
    job over (a second delivery of it, or an older task, finds the token changed).
    """
    token = uuid.uuid4()
    RegenerationJob.objects.filter(pk=job.pk).update(
        runner_heartbeat=now or timezone.now(), runner_token=token
    )
    send_runner(job, token=token)


def send_runner(job: RegenerationJob, *, token: uuid.UUID, slot: int = 0) -> None:
    """Once the current transaction commits, a "run job J" task on the job's cluster,
    carrying the token the runner (of ``slot``: runner_slots.py) takes the job with."""
    from django_q.tasks import async_task

    job_id, queue = job.pk, job.queue
    name = f"job-{job_id}-runner-{slot}" if slot else f"job-{job_id}"
    slot_kwargs = {"slot": slot} if slot else {}
    transaction.on_commit(
        lambda: async_task(
            "metadata.tasks.run_job",
            job_id,
            runner_token=token.hex,
            **slot_kwargs,
            q_options={"cluster": queue, "task_name": name},
        )
    )


def enqueue(job: RegenerationJob) -> None:
    """draft (or preparing) -> queued, then a runner on the job's queue (in sync mode: run
    to the end)."""
    _move_job(job, to=JobState.QUEUED, sources={JobState.DRAFT, JobState.PREPARING})
    dispatch(job)


def enqueue_inline(job: RegenerationJob) -> None:
    """draft -> queued for a runner in this process (runner.run_inline): nothing is sent.

    The heartbeat now, so recover() does not send a cluster runner to a job this process
    is about to start.
    """
    _move_job(job, to=JobState.QUEUED, sources={JobState.DRAFT}, runner_heartbeat=timezone.now())


def pause(job: RegenerationJob, *, reason: str, by=None) -> None:
    """Runners stop before their next item; in-flight calls are still recorded.

    ``by``: the person who paused it. The job's starter is told of a pause (a mail and a
    notice), unless they paused it themselves."""
    _move_job(
        job, to=JobState.PAUSED, sources={JobState.QUEUED, JobState.RUNNING}, pause_reason=reason
    )
    if by is None or by.pk != job.created_by_id:
        _notify_on_commit(job)


def resume(job: RegenerationJob) -> None:
    _move_job(job, to=JobState.QUEUED, sources={JobState.PAUSED}, pause_reason="")
    dispatch(job)


def cancel(job: RegenerationJob) -> None:
    """Pending items are cancelled at once; a claimed item finishes (its call is paid for)
    or is cancelled when its runner lets go of it, whatever its call answered.

    The job's move is one short transaction and its pending items are cancelled after it
    in chunks (cancel_pending), so a job of a million images never holds the write lock
    for long; a runner stops at the cancelled state, and an item given back meanwhile is
    cancelled by its own give-back (items.pending_unless_finished).
    """
    _move_job(
        job,
        to=JobState.CANCELLED,
        sources={
            JobState.DRAFT,
            JobState.PREPARING,
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.PAUSED,
        },
        finished_at=timezone.now(),
    )
    cancel_pending(job_id=job.pk, error="cancelled")


def fail(job: RegenerationJob, *, reason: str) -> None:
    """The job could not run at all (``completed`` is the state of a job with failed items)."""
    _move_job(
        job,
        to=JobState.FAILED,
        sources={JobState.DRAFT, JobState.PREPARING, JobState.QUEUED, JobState.RUNNING},
        error=reason,
        finished_at=timezone.now(),
    )
    cancel_pending(job_id=job.pk, error=reason)
    _notify_on_commit(job)


# An UPDATE of an item rewrites it and its indexes: on PostgreSQL 20,000 took ~2 s where
# creation's INSERT of as many is far less (bench/progress.py); 5,000 keeps it well under.
CANCEL_CHUNK = 5_000


def cancel_chunk() -> int:
    """Pending items one transaction of cancel_pending cancels: CANCEL_CHUNK, or
    creation's chunk size if smaller."""
    return max(min(int(settings.MEDIAOPT_JOB_CREATE_CHUNK), CANCEL_CHUNK), 1)


def cancel_pending(*, job_id: int, error: str) -> int:
    """Cancel a finished job's pending items, cancel_chunk() at a time, each chunk and its
    count on the job row one short transaction; how many were cancelled. If the process
    dies between chunks, recover() cancels the rest (no pending item under a finished job
    is ever worked)."""
    step = cancel_chunk()
    cancelled = 0
    while True:
        with transaction.atomic():
            chunk = (
                JobItem.objects.filter(job_id=job_id, state=ItemState.PENDING)
                .order_by()
                .values("pk")[:step]
            )
            chosen = JobItem.objects.filter(pk__in=Subquery(chunk))
            if connection.features.has_select_for_update:
                # PostgreSQL: an item claimed since the subquery's snapshot is rechecked
                # against this when its lock is granted. SQLite holds the write lock from
                # BEGIN (IMMEDIATE), and this filter would make it read every pending item.
                chosen = chosen.filter(state=ItemState.PENDING)
            n = chosen.update(state=ItemState.CANCELLED, error=error, updated_at=timezone.now())
            counts.moved(job_id=job_id, state=ItemState.CANCELLED, n=n)
        cancelled += n
        # Until a chunk finds none: on PostgreSQL a chunk may be short because a runner
        # claimed some of its items meanwhile, with more pending after them.
        if not n:
            return cancelled


def start(job: RegenerationJob) -> None:
    """queued -> running (a runner picked the job up)."""
    _move_job(job, to=JobState.RUNNING, sources={JobState.QUEUED}, started_at=timezone.now())


def complete_if_done(job: RegenerationJob) -> bool:
    """running -> completed when no item is pending or claimed. True if it completed now."""
    now = timezone.now()
    # One statement, so an item added or released meanwhile cannot be missed.
    moved = (
        RegenerationJob.objects.filter(pk=job.pk, state=JobState.RUNNING)
        .exclude(items__state__in=[ItemState.PENDING, ItemState.CLAIMED])
        .update(state=JobState.COMPLETED, finished_at=now, updated_at=now)
    )
    job.refresh_from_db()
    if moved == 1:
        _notify_on_commit(job)
    return moved == 1


# -- creating ----------------------------------------------------------------------------


def delete_stale_drafts(*, older_than: datetime) -> int:
    """Delete drafts created before ``older_than``: confirmation pages nobody confirmed.

    Conditional on the state, so a draft enqueued meanwhile stays.
    """
    deleted, _ = RegenerationJob.objects.filter(
        state=JobState.DRAFT, created_at__lt=older_than
    ).delete()
    return deleted


def create_draft(
    *,
    kind: str,
    scope: dict,
    queue: str = JobQueue.BULK,
    options: dict | None = None,
    created_by=None,
    account: Account | None = None,
    retry_of: RegenerationJob | None = None,
    undo_of: RegenerationJob | None = None,
) -> RegenerationJob:
    """A draft job with no items yet (so no image is busy): its scope, options and account."""
    return RegenerationJob.objects.create(
        kind=kind,
        queue=queue,
        state=JobState.DRAFT,
        created_by=created_by,
        options=options or {},
        scope=scope,
        retry_of=retry_of,
        undo_of=undo_of,
        account=account or Account.objects.current(),
    )


def set_options(*, job: RegenerationJob, options: dict, created_by=None) -> None:
    """Store a draft's (or a preparing job's) options as confirmed (and who confirmed it,
    if nobody drafted it)."""
    fields: dict = {"options": options, "updated_at": timezone.now()}
    if created_by is not None and job.created_by_id is None:
        fields["created_by"] = created_by
    RegenerationJob.objects.filter(
        pk=job.pk, state__in=[JobState.DRAFT, JobState.PREPARING]
    ).update(**fields)
    job.refresh_from_db(fields=["options", "created_by"])


# A scope lists its ids only for a small explicit selection; more is stored as a range.
MAX_LISTED_IDS = 1_000


def ids_scope(asset_ids: list[int]) -> dict:
    """How a job's scope names these assets: the ids of a small selection, else the range
    they lie in and how many (an import of 100,000 files is not 100,000 ids on its page);
    the job's items are the truth of which images it works."""
    if len(asset_ids) <= MAX_LISTED_IDS:
        return {"ids": list(asset_ids)}
    return {"id_range": [min(asset_ids), max(asset_ids)], "images": len(asset_ids)}


def create_job(
    *,
    kind: str,
    asset_ids: list[int],
    options: dict | None = None,
    created_by=None,
    queue: str = JobQueue.BULK,
    scope: dict | None = None,
    retry_of: RegenerationJob | None = None,
    account: Account | None = None,
) -> JobCreation:
    """A draft job with one pending item per asset not already busy in another job.

    The database constraint decides who is busy (ignore_conflicts): two confirmations
    racing for the same assets make one set of active items.
    """
    unique_ids = list(dict.fromkeys(asset_ids))
    with transaction.atomic():
        job = create_draft(
            kind=kind,
            queue=queue,
            created_by=created_by,
            options=options,
            scope=scope if scope is not None else ids_scope(unique_ids),
            retry_of=retry_of,
            account=account,
        )
        now = timezone.now()
        JobItem.objects.bulk_create(
            [JobItem(job=job, asset_id=asset_id, not_before=now) for asset_id in unique_ids],
            ignore_conflicts=True,
            batch_size=500,
        )
        created = JobItem.objects.filter(job=job).count()
        counts.added(job_id=job.pk, n=created)
    return JobCreation(job=job, busy_count=len(unique_ids) - created)


def prepare_later(job: RegenerationJob) -> None:
    """Hand "add the items of job J, then queue it" to the job's cluster on commit."""
    from django_q.tasks import async_task

    job_id, queue = job.pk, job.queue
    transaction.on_commit(
        lambda: async_task(
            "metadata.tasks.prepare_job",
            job_id,
            q_options={"cluster": queue, "task_name": f"prepare-{job_id}"},
        )
    )


def begin_preparing(job: RegenerationJob) -> None:
    """draft -> preparing: confirmed; its items are then added in chunks, outside any long
    transaction (metadata.creation), and enqueue() queues it."""
    _move_job(job, to=JobState.PREPARING, sources={JobState.DRAFT})


def fail_stale_preparing(*, older_than: datetime) -> int:
    """Fail jobs left preparing since ``older_than`` (the process adding their items died;
    their pending items are cancelled, so the images are free): every chunk touches
    ``updated_at``, so a live preparation is never stale."""
    failed = 0
    for job in RegenerationJob.objects.filter(state=JobState.PREPARING, updated_at__lt=older_than):
        try:
            fail(job, reason="Its preparation stopped before every image was added.")
        except IllegalTransition:
            continue
        failed += 1
    return failed


def add_items(
    *,
    job: RegenerationJob,
    assets: QuerySet,
    bounds: tuple[int | None, int | None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """One pending item per asset of ``assets`` not busy in another job, in chunks of short
    transactions; how many were added (metadata.creation says how)."""
    from metadata import creation

    return creation.add_items(job=job, assets=assets, bounds=bounds, on_chunk=on_chunk)


# -- retrying ----------------------------------------------------------------------------


class NothingToRetry(Exception):
    """No failed image of the job can be retried now; the message says why."""


def retry_failed(*, job: RegenerationJob, actor) -> JobCreation:
    """A queued ``retry`` job (``retry_of=job``) over the assets of ``job``'s failed items.

    Assets that already succeeded or were skipped in an earlier retry of this job are left
    out. Assets busy in another job are counted in ``busy_count``; when every one is busy
    (e.g. "Retry failed" clicked twice), nothing is created and NothingToRetry says which
    job holds them, so a double click makes one job.
    """
    redone = JobItem.objects.filter(
        job__retry_of=job, state__in=[ItemState.SUCCEEDED, ItemState.SKIPPED]
    ).values("asset_id")
    failed = (
        JobItem.objects.filter(job=job, state=ItemState.FAILED)
        .exclude(asset_id__in=redone)
        .values("asset_id")
    )
    if job.kind == JobKind.UNDO:
        # An undo item fails only on an error worth reading, and a retry job would
        # regenerate instead of undoing: undo the job again instead.
        raise NothingToRetry(f"Job #{job.pk} is an undo; undo job #{job.undo_of_id} again instead.")
    total = failed.count()
    if not total:
        raise NothingToRetry(f"Job #{job.pk} has no failed image left to retry.")
    with transaction.atomic():
        retry = create_draft(
            kind=JobKind.RETRY,
            # A filter, not the ids: the failed images of a job are its items.
            scope={"retry_of": job.pk, "state": ItemState.FAILED.value},
            # A retry is no trial: its images are written (or reviewed) like any job's.
            options={k: v for k, v in (job.options or {}).items() if k != "trial"},
            created_by=actor,
            queue=job.queue,
            retry_of=job,
            account=job.account,
        )
        added = add_items(job=retry, assets=MediaAsset.objects.filter(pk__in=failed).order_by("pk"))
        if not added:
            holder = (
                JobItem.objects.active()
                .filter(asset_id__in=failed)
                .values_list("job_id", flat=True)
                .first()
            )
            # Leaving the block by an exception rolls the empty draft back.
            raise NothingToRetry(
                f"Every failed image of job #{job.pk} is already being worked on (job #{holder})."
            )
        enqueue(retry)
    return JobCreation(job=retry, busy_count=total - added)


# -- the runner's writes ------------------------------------------------------------------


def take_over(
    *, job_id: int, dispatched: uuid.UUID | None, force: bool = False
) -> uuid.UUID | None:
    """Make this runner the job's one runner; its own token, or None: exit at once.

    A task takes over with the token dispatch() gave it, or when the job has no runner
    (none named, or no heartbeat for runner_stale_seconds()). A second delivery of the
    same task, or an older task, finds the token already changed. ``force`` (a process
    working a job inline) takes over unconditionally.
    """
    mine = uuid.uuid4()
    now = timezone.now()
    ours = RegenerationJob.objects.filter(pk=job_id)
    if not force:
        stale = now - timedelta(seconds=runner_stale_seconds())
        free = (
            Q(runner_token__isnull=True)
            | Q(runner_heartbeat__isnull=True)
            | Q(runner_heartbeat__lt=stale)
        )
        ours = ours.filter(free | Q(runner_token=dispatched) if dispatched else free)
    if not ours.update(runner_token=mine, runner_heartbeat=now):
        return None
    return mine


def heartbeat(*, job_id: int, runner_token: uuid.UUID | None, touch: bool = True) -> str | None:
    """Say this job's runner is alive (unless ``touch`` is False); return the job's state,
    or None once another runner took the job over (this one must stop)."""
    ours = RegenerationJob.objects.filter(pk=job_id)
    if runner_token is not None:
        ours = ours.filter(runner_token=runner_token)
    if touch and not ours.update(runner_heartbeat=timezone.now()):
        return None
    return ours.values_list("state", flat=True).first()


def let_go_of_job(*, job_id: int, runner_token: uuid.UUID | None) -> None:
    """A runner that stops (not handing over) says so: recover() need not wait for its
    heartbeat to go stale before sending a new one."""
    if runner_token is not None:
        RegenerationJob.objects.filter(pk=job_id, runner_token=runner_token).update(
            runner_token=None, runner_heartbeat=None
        )
