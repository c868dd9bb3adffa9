"""The only writer of job and item rows: create, enqueue, claim, finish, pause, resume,
cancel, recover.

Every transition is a conditional UPDATE on the state it starts from (checked against the
tables below first, so a caller's mistake raises IllegalTransition and moves nothing).
The job and item rows are the truth; django-q2 only carries "run job J", and may lose it
(Redis) or deliver it twice (ORM): a runner is idempotent and recover() replaces a lost one.

Attempts are counted and a lease set when an item is claimed, before its image is opened,
so an image that kills its worker fails after N attempts instead of coming back for ever.
Writes of a result are guarded by the lease token: a worker that lost its lease (it froze,
recover() gave the item to another) writes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.utils import timezone

from billing import ledger
from billing.models import Account
from metadata import generation, revisions
from metadata.models import (
    ACTIVE_ITEM_STATES,
    FINAL_JOB_STATES,
    ItemState,
    JobItem,
    JobKind,
    JobQueue,
    JobState,
    MetadataRevision,
    RegenerationJob,
)
from metadata.providers.base import DescribeResult

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobState.DRAFT: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
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

ITEM_TRANSITIONS: dict[str, frozenset[str]] = {
    # pending -> failed: claim() gives up on an item whose attempts ran out.
    ItemState.PENDING: frozenset({ItemState.CLAIMED, ItemState.FAILED, ItemState.CANCELLED}),
    # claimed -> pending: backoff, a pause, or an expired lease; claimed -> cancelled: the
    # job was cancelled while the item was held.
    ItemState.CLAIMED: frozenset(
        {
            ItemState.PENDING,
            ItemState.SUCCEEDED,
            ItemState.SKIPPED,
            ItemState.FAILED,
            ItemState.CANCELLED,
        }
    ),
    ItemState.SUCCEEDED: frozenset(),
    ItemState.SKIPPED: frozenset(),
    ItemState.FAILED: frozenset(),
    ItemState.CANCELLED: frozenset(),
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


@dataclass(frozen=True)
class ClaimedItem:
    id: int
    asset_id: int
    attempts: int
    lease_token: uuid.UUID


@dataclass(frozen=True)
class Recovery:
    released: int  # expired leases put back to pending (or cancelled)
    requeued: list[int]  # jobs given a new runner
    completed: list[int]  # jobs whose last item was finished by a runner that then died


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


def dispatch(job: RegenerationJob, *, now: datetime | None = None) -> None:
    """Hand "run job J" to the job's cluster once the current transaction commits.

    The heartbeat is touched now, so recover() does not send a second runner while this
    one waits in the queue; the task carries a new runner token, so only it may take the
    job over (a second delivery of it, or an older task, finds the token changed).
    """
    from django_q.tasks import async_task

    token = uuid.uuid4()
    RegenerationJob.objects.filter(pk=job.pk).update(
        runner_heartbeat=now or timezone.now(), runner_token=token
    )
    job_id, queue = job.pk, job.queue
    transaction.on_commit(
        lambda: async_task(
            "metadata.tasks.run_job",
            job_id,
            runner_token=token.hex,
            q_options={"cluster": queue, "task_name": f"job-{job_id}"},
        )
    )


def enqueue(job: RegenerationJob) -> None:
    """draft -> queued, then a runner on the job's queue (in sync mode: run to the end)."""
    _move_job(job, to=JobState.QUEUED, sources={JobState.DRAFT})
    dispatch(job)


def enqueue_inline(job: RegenerationJob) -> None:
    """draft -> queued for a runner in this process (runner.run_inline): nothing is sent.

    The heartbeat now, so recover() does not send a cluster runner to a job this process
    is about to start.
    """
    _move_job(job, to=JobState.QUEUED, sources={JobState.DRAFT}, runner_heartbeat=timezone.now())


def pause(job: RegenerationJob, *, reason: str) -> None:
    """Runners stop before their next item; in-flight calls are still recorded."""
    _move_job(
        job, to=JobState.PAUSED, sources={JobState.QUEUED, JobState.RUNNING}, pause_reason=reason
    )


def resume(job: RegenerationJob) -> None:
    _move_job(job, to=JobState.QUEUED, sources={JobState.PAUSED}, pause_reason="")
    dispatch(job)


def cancel(job: RegenerationJob) -> None:
    """Pending items are cancelled at once; a claimed item finishes (its call is paid for)
    or is cancelled when its runner lets go of it, whatever its call answered."""
    with transaction.atomic():
        _move_job(
            job,
            to=JobState.CANCELLED,
            sources={JobState.DRAFT, JobState.QUEUED, JobState.RUNNING, JobState.PAUSED},
            finished_at=timezone.now(),
        )
        JobItem.objects.filter(job=job, state=ItemState.PENDING).update(
            state=ItemState.CANCELLED, error="cancelled", updated_at=timezone.now()
        )


def fail(job: RegenerationJob, *, reason: str) -> None:
    """The job could not run at all (``completed`` is the state of a job with failed items)."""
    with transaction.atomic():
        _move_job(
            job,
            to=JobState.FAILED,
            sources={JobState.DRAFT, JobState.QUEUED, JobState.RUNNING},
            error=reason,
            finished_at=timezone.now(),
        )
        JobItem.objects.filter(job=job, state=ItemState.PENDING).update(
            state=ItemState.CANCELLED, error=reason, updated_at=timezone.now()
        )


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
    return moved == 1


# -- creating ----------------------------------------------------------------------------


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
    """Store a draft's options as confirmed (and who confirmed it, if nobody drafted it)."""
    fields: dict = {"options": options, "updated_at": timezone.now()}
    if created_by is not None and job.created_by_id is None:
        fields["created_by"] = created_by
    RegenerationJob.objects.filter(pk=job.pk, state=JobState.DRAFT).update(**fields)
    job.refresh_from_db(fields=["options", "created_by"])


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
            scope=scope if scope is not None else {"ids": unique_ids},
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
    return JobCreation(job=job, busy_count=len(unique_ids) - created)


def add_items(*, job: RegenerationJob, assets: QuerySet) -> int:
    """One pending item per asset of ``assets`` not busy in another job; how many were added.

    One INSERT ... SELECT whatever the number of assets (a bulk confirmation of the whole
    library costs what one of ten images does), in the queryset's order: claims take
    items by id. As in create_job, the database constraint decides who is busy.
    """
    # An alias of our own: a bare "id" column of a subquery is not named alike everywhere.
    chosen = assets.annotate(item_asset_id=F("pk")).values_list("item_asset_id", flat=True)
    inner_sql, inner_params = chosen.query.sql_with_params()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    qn = connection.ops.quote_name
    # "WHERE true": SQLite needs a WHERE before ON CONFLICT in an INSERT ... SELECT.
    sql = (
        f"INSERT INTO {qn(JobItem._meta.db_table)} "
        f"({qn('job_id')}, {qn('asset_id')}, {qn('state')}, {qn('attempts')}, "
        f"{qn('not_before')}, {qn('error')}, {qn('conflicts')}, {qn('updated_at')}) "
        f"SELECT %s, chosen.{qn('item_asset_id')}, %s, 0, %s, '', %s, %s "
        f"FROM ({inner_sql}) chosen "
        "WHERE true ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        empty = JobItem._meta.get_field("conflicts").get_db_prep_save([], connection)
        cursor.execute(sql, [job.pk, ItemState.PENDING.value, now, empty, now, *inner_params])
        return cursor.rowcount


# -- item transitions --------------------------------------------------------------------


def claim(
    *, job_id: int, batch_size: int, lease_seconds: float, count_attempt: bool = False
) -> list[ClaimedItem]:
    """Take up to ``batch_size`` due pending items under a lease.

    The attempt is counted by open_item, when the runner opens the image: batch mates of
    an image that kills its worker lose nothing. ``count_attempt`` counts it here instead,
    for work that opens no image (undo). Items whose attempts already ran out (their
    worker died on them each time) fail here with the reason instead of being opened again.
    """
    limit = max_attempts()
    claimed: list[ClaimedItem] = []
    with transaction.atomic():
        now = timezone.now()
        expires = now + timedelta(seconds=lease_seconds)
        while len(claimed) < batch_size:
            due = JobItem.objects.filter(
                job_id=job_id, state=ItemState.PENDING, not_before__lte=now
            ).order_by("not_before", "id")
            if connection.features.has_select_for_update_skip_locked:
                # Two runners on one job take different items instead of waiting.
                due = due.select_for_update(skip_locked=True)
            rows = list(due.values_list("id", "asset_id", "attempts")[: batch_size - len(claimed)])
            if not rows:
                break
            for item_id, asset_id, attempts in rows:
                if attempts >= limit:
                    JobItem.objects.filter(pk=item_id, state=ItemState.PENDING).update(
                        state=ItemState.FAILED,
                        error=(
                            f"gave up after {attempts} attempts (the worker died while "
                            "processing this image)"
                        ),
                        updated_at=now,
                    )
                    continue
                token = uuid.uuid4()
                # Conditional on pending: on SQLite (no row locks) the IMMEDIATE
                # transaction serialises claims; this guard keeps them honest anyway.
                counted = 1 if count_attempt else 0
                if JobItem.objects.filter(pk=item_id, state=ItemState.PENDING).update(
                    state=ItemState.CLAIMED,
                    attempts=F("attempts") + counted,
                    lease_token=token,
                    lease_expires_at=expires,
                    updated_at=now,
                ):
                    claimed.append(
                        ClaimedItem(
                            id=item_id,
                            asset_id=asset_id,
                            attempts=attempts + counted,
                            lease_token=token,
                        )
                    )
    return claimed


def _held(item_id: int, lease_token: uuid.UUID):
    return JobItem.objects.filter(pk=item_id, state=ItemState.CLAIMED, lease_token=lease_token)


def open_item(*, item: ClaimedItem, lease_seconds: float) -> ClaimedItem | None:
    """Count the attempt of an item whose image is about to be opened (and renew its
    lease); the item with its new count, or None if the lease was lost."""
    now = timezone.now()
    if not _held(item.id, item.lease_token).update(
        attempts=F("attempts") + 1,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        updated_at=now,
    ):
        _lease_lost(item.id)
        return None
    return dataclasses.replace(item, attempts=item.attempts + 1)


def extend_leases(*, job_id: int, lease_tokens: list[uuid.UUID], seconds: float) -> int:
    """The live runner's heartbeat: push out the leases it holds and their credit holds
    together, so a call slower than one lease keeps its item. Returns leases extended."""
    if not lease_tokens:
        return 0
    now = timezone.now()
    expires = now + timedelta(seconds=seconds)
    with transaction.atomic():
        held = JobItem.objects.filter(
            job_id=job_id, state=ItemState.CLAIMED, lease_token__in=lease_tokens
        )
        item_ids = list(held.values_list("pk", flat=True))
        extended = held.update(lease_expires_at=expires, updated_at=now)
        ledger.extend_item_holds(item_ids=item_ids, expires_at=expires)
    return extended


def extend_lease(*, item_id: int, lease_token: uuid.UUID, seconds: float) -> bool:
    """Push the lease's expiry out; False if the lease was lost."""
    now = timezone.now()
    return bool(
        _held(item_id, lease_token).update(
            lease_expires_at=now + timedelta(seconds=seconds), updated_at=now
        )
    )


def _lease_lost(item_id: int) -> None:
    logger.warning("Lost the lease on job item %s: its result is not written.", item_id)


def finish_item(
    *,
    item_id: int,
    lease_token: uuid.UUID,
    result: DescribeResult,
    source: str,
    options: generation.GenerationOptions,
    hold_key: str | None = None,
) -> bool:
    """Write a result under the lease: revision, asset fields, item state and, for a paid
    call, the credit capture, together.

    Credits are spent only when the result changed the image; otherwise (and when the lease
    was lost, in which case nothing is written and False is returned) the hold is released.
    """
    captured = False
    with transaction.atomic():
        # The item's UPDATE first: it takes the row lock (PostgreSQL) that recover()'s
        # conditional UPDATE would need, and proves the lease is still ours.
        now = timezone.now()
        if not _held(item_id, lease_token).update(
            state=ItemState.SUCCEEDED, lease_token=None, lease_expires_at=None, updated_at=now
        ):
            _lease_lost(item_id)
            if hold_key:
                ledger.release(hold_key=hold_key)
            return False
        item = JobItem.objects.select_related("job", "asset").get(pk=item_id)
        outcome = generation.write_result(
            asset=item.asset,
            result=result,
            source=source,
            options=options,
            actor=item.job.created_by,
            job=item.job,
            asset_is_fresh=True,  # read just above, in this transaction
        )
        if not outcome.ok:
            state, error = ItemState.FAILED, outcome.reason
        elif outcome.proposal is not None:
            state, error = ItemState.SUCCEEDED, outcome.reason
        elif outcome.revision is None:
            state, error = ItemState.SKIPPED, outcome.reason or "nothing to change"
        else:
            state, error = ItemState.SUCCEEDED, ""
        JobItem.objects.filter(pk=item_id).update(
            state=state, error=error, revision=outcome.revision, updated_at=now
        )
        if hold_key and outcome.charged:
            ledger.capture(hold_key=hold_key, capture_key=ledger.capture_key(item_id=item_id))
            captured = True
    if hold_key and not captured:
        ledger.release(hold_key=hold_key)
    return True


def _let_go(item_id: int, lease_token: uuid.UUID, **fields) -> bool:
    """Move a held item out of ``claimed`` and clear its lease; False if the lease was lost."""
    if _held(item_id, lease_token).update(
        lease_token=None, lease_expires_at=None, updated_at=timezone.now(), **fields
    ):
        return True
    _lease_lost(item_id)
    return False


def fail_item(*, item_id: int, lease_token: uuid.UUID, error: str) -> bool:
    """claimed -> failed with a reason a person can read. False if the lease was lost."""
    return _let_go(item_id, lease_token, state=ItemState.FAILED, error=error)


def _pending_unless_finished() -> Case:
    """The state of an item given back: pending, or cancelled if its job is finished.

    One expression in the UPDATE that gives the item back, so a cancel committing at the
    same moment cannot leave a pending item under a cancelled job (which would also keep
    its image busy for every later job).
    """
    finished = RegenerationJob.objects.filter(pk=OuterRef("job_id"), state__in=FINAL_JOB_STATES)
    return Case(
        When(Exists(finished), then=Value(ItemState.CANCELLED.value)),
        default=Value(ItemState.PENDING.value),
        output_field=CharField(),
    )


def _error_unless_finished(error: str | None) -> Case:
    """ "cancelled" under a finished job, else ``error`` (None: the item's error as it is)."""
    finished = RegenerationJob.objects.filter(pk=OuterRef("job_id"), state__in=FINAL_JOB_STATES)
    kept = F("error") if error is None else Value(error)
    return Case(
        When(Exists(finished), then=Value("cancelled")), default=kept, output_field=TextField()
    )


def retry_later(*, item_id: int, lease_token: uuid.UUID, not_before: datetime, error: str) -> bool:
    """claimed -> pending, due at ``not_before`` (backoff without holding the item); to
    cancelled instead if the job was cancelled while the call was in flight."""
    return _let_go(
        item_id,
        lease_token,
        state=_pending_unless_finished(),
        not_before=not_before,
        error=_error_unless_finished(error),
    )


def release_item(*, item_id: int, lease_token: uuid.UUID, opened: bool = False) -> bool:
    """Let go of an item without using up its attempt (a pause, a hand-over, a cancel):
    an ``opened`` item gets back the attempt open_item counted.

    If its job was cancelled meanwhile, the item is cancelled instead of pending.
    """
    fields: dict = {"attempts": F("attempts") - 1} if opened else {}
    return _let_go(
        item_id,
        lease_token,
        state=_pending_unless_finished(),
        error=_error_unless_finished(None),
        **fields,
    )


def cancel_item(*, item_id: int, lease_token: uuid.UUID, error: str) -> bool:
    """claimed -> cancelled (its image was deleted). False if the item or lease is gone."""
    return _let_go(item_id, lease_token, state=ItemState.CANCELLED, error=error)


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
    asset_ids = list(
        JobItem.objects.filter(job=job, state=ItemState.FAILED)
        .exclude(asset_id__in=redone)
        .order_by("id")
        .values_list("asset_id", flat=True)
    )
    if job.kind == JobKind.UNDO:
        # An undo item fails only on an error worth reading, and a retry job would
        # regenerate instead of undoing: undo the job again instead.
        raise NothingToRetry(f"Job #{job.pk} is an undo; undo job #{job.undo_of_id} again instead.")
    if not asset_ids:
        raise NothingToRetry(f"Job #{job.pk} has no failed image left to retry.")
    with transaction.atomic():
        creation = create_job(
            kind=JobKind.RETRY,
            asset_ids=asset_ids,
            options={k: v for k, v in (job.options or {}).items() if k != "pause_after"},
            created_by=actor,
            queue=job.queue,
            retry_of=job,
            account=job.account,
        )
        if creation.busy_count == len(asset_ids):
            holder = (
                JobItem.objects.active()
                .filter(asset_id__in=asset_ids)
                .values_list("job_id", flat=True)
                .first()
            )
            # Leaving the block by an exception rolls the empty draft back.
            raise NothingToRetry(
                f"Every failed image of job #{job.pk} is already being worked on (job #{holder})."
            )
        enqueue(creation.job)
    return creation


# -- recovery ----------------------------------------------------------------------------


def recover(now: datetime | None = None) -> Recovery:
    """Expired leases back to pending; a job with work and no live runner gets one; a job
    with nothing left to do completes; no open item stays under a finished job.

    Runs every minute from the "mediaopt.recover" schedule and may be called directly.
    Safe to run anywhere at any time: every change is a conditional UPDATE.
    """
    now = now or timezone.now()
    # Items a cancel or failure left behind (a give-back that raced it): nobody works them.
    released = JobItem.objects.filter(
        Q(state=ItemState.PENDING) | Q(state=ItemState.CLAIMED, lease_expires_at__lt=now),
        job__state__in=FINAL_JOB_STATES,
    ).update(
        state=ItemState.CANCELLED,
        error="cancelled",
        lease_token=None,
        lease_expires_at=None,
        updated_at=now,
    )
    # The attempt stays counted: a worker that died on this image used it up. The state is
    # decided in the same statement, so a cancel committing meanwhile still wins.
    released += JobItem.objects.filter(state=ItemState.CLAIMED, lease_expires_at__lt=now).update(
        state=_pending_unless_finished(),
        error=_error_unless_finished(None),
        lease_token=None,
        lease_expires_at=None,
        updated_at=now,
    )

    # Holds of workers that died between hold and capture: nothing is spent twice or lost.
    released_holds = ledger.release_expired(now=now)
    stale = now - timedelta(seconds=runner_stale_seconds())
    requeued: list[int] = []
    completed: list[int] = []
    for job in RegenerationJob.objects.unfinished():
        open_items = JobItem.objects.filter(job=job, state__in=ACTIVE_ITEM_STATES)
        if not open_items.exists():
            # Its last items were recorded after a pause, or its runner died or was lost
            # right after them: nobody would ever complete it.
            if job.state == JobState.QUEUED:
                with contextlib.suppress(IllegalTransition):
                    start(job)
            if job.state == JobState.RUNNING and complete_if_done(job):
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
            dispatch(job, now=now)
    if released or released_holds or requeued or completed:
        logger.info(
            "recover: %s lease(s) and %s hold(s) released, jobs %s re-enqueued, jobs %s completed",
            released,
            released_holds,
            requeued,
            completed,
        )
    return Recovery(released=released, requeued=requeued, completed=completed)


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


def pause_for_review(*, job: RegenerationJob, limit: int) -> None:
    """Pause a "Try on N first" job and drop its ``pause_after`` option, so Resume runs the
    rest without stopping. Raises IllegalTransition if it was paused or cancelled meanwhile."""
    with transaction.atomic():
        pause(job, reason=f"Paused after the first {limit} images for review.")
        options = {key: value for key, value in job.options.items() if key != "pause_after"}
        RegenerationJob.objects.filter(pk=job.pk).update(options=options)
        job.options = options


def finish_undo_items(*, items: list[ClaimedItem], job: RegenerationJob) -> int:
    """Undo ``job.undo_of`` on these items' images under their leases, in one transaction:
    the undo revisions and each item's state, conflicts and result together. Items whose
    lease was lost write nothing. Returns how many were finished."""
    target = job.undo_of
    assert target is not None
    override = bool((job.options or {}).get("override"))
    if not items:
        return 0
    with transaction.atomic():
        now = timezone.now()
        ours = Q()
        for item in items:
            ours |= Q(pk=item.id, lease_token=item.lease_token)
        held = JobItem.objects.filter(ours, state=ItemState.CLAIMED)
        if connection.features.has_select_for_update:
            # Locked, so recover() cannot take one back until this batch is written.
            held = held.select_for_update()
        held_ids = set(held.values_list("pk", flat=True))
        for item in items:
            if item.id not in held_ids:
                _lease_lost(item.id)
        mine = [item for item in items if item.id in held_ids]
        outcomes = revisions.undo_assets(
            asset_ids=[item.asset_id for item in mine],
            job=target,
            override=override,
            actor=job.created_by,
            undo_job=job,
        )
        # Items grouped by what they say: one UPDATE per group (a handful per chunk), each
        # item's own revision found by a subquery (an undo job writes one per image).
        groups: dict[tuple[str, str, tuple[str, ...]], list[int]] = {}
        for item in mine:
            outcome = outcomes[item.asset_id]
            plan = outcome.plan
            if outcome.revision is not None:
                state, error = ItemState.SUCCEEDED, ""
            elif plan.unavailable:
                state, error = ItemState.SKIPPED, plan.unavailable
            elif plan.kept:
                state, error = (
                    ItemState.SKIPPED,
                    "every field the job changed was changed again since",
                )
            else:
                state, error = (
                    ItemState.SKIPPED,
                    f"already has its values from before job #{target.pk}",
                )
            groups.setdefault((state, error, plan.conflicts), []).append(item.id)
        own_revision = MetadataRevision.objects.filter(job=job, asset_id=OuterRef("asset_id"))
        for (state, error, conflicts), ids in groups.items():
            JobItem.objects.filter(pk__in=ids).update(
                state=state,
                error=error,
                conflicts=list(conflicts),
                revision=Subquery(own_revision.values("pk")[:1]),
                lease_token=None,
                lease_expires_at=None,
                updated_at=now,
            )
    return len(mine)
