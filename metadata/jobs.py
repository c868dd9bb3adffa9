"""The only mover of job and item states: create, enqueue, claim, finish, pause, resume,
cancel, recover, and the runner that works a job.

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
import functools
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from billing import gate, ledger
from billing.models import Account
from mediaopt.library import images
from mediaopt.library.fields import FIELDS, Source
from mediaopt.library.models import MediaAsset
from metadata import generation, ratelimit, revisions
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    JobQueue,
    JobState,
    MetadataRevision,
    RegenerationJob,
    Settings,
)
from metadata.providers.base import DescribeRequest, DescribeResult, ErrorKind, ProviderError
from metadata.providers.retry import backoff_delay

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

JOB_WORK: dict[str, gate.WorkKind] = {
    JobKind.UPLOAD: gate.WorkKind.UPLOAD,
    JobKind.IMPORT: gate.WorkKind.IMPORT,
    JobKind.SINGLE: gate.WorkKind.SINGLE,
}


class IllegalTransition(Exception):
    """A state change that the tables above refuse, or whose start state has moved on."""


# -- tuning ------------------------------------------------------------------------------


def _tuning(name: str, default: float) -> float:
    """A Django setting, else an environment variable (subprocesses in tests), else default."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or default
    return float(value)


def lease_seconds() -> float:
    # Longer than one provider call (OPENAI_TIMEOUT) plus the preview: the lease is
    # extended before each item of a batch.
    return _tuning("MEDIAOPT_JOB_LEASE_SECONDS", 300)


def max_attempts() -> int:
    return int(_tuning("MEDIAOPT_JOB_MAX_ATTEMPTS", 3))


def batch_size() -> int:
    return int(_tuning("MEDIAOPT_JOB_BATCH_SIZE", 4))


def run_budget_seconds() -> float:
    """A runner hands over (re-enqueues itself) after this long, well inside Q timeout."""
    return _tuning("MEDIAOPT_JOB_RUN_SECONDS", 60)


def max_sleep_seconds() -> float:
    return _tuning("MEDIAOPT_JOB_MAX_SLEEP_SECONDS", 5)


def runner_stale_seconds() -> float:
    """A heartbeat older than this means no runner is working the job."""
    return _tuning("MEDIAOPT_JOB_RUNNER_STALE_SECONDS", lease_seconds())


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
class Progress:
    total: int
    pending: int
    claimed: int
    succeeded: int
    skipped: int
    failed: int
    cancelled: int

    @property
    def done(self) -> int:
        return self.succeeded + self.skipped + self.failed + self.cancelled

    @property
    def remaining(self) -> int:
        return self.pending + self.claimed

    @property
    def percent(self) -> int:
        return 100 if not self.total else (100 * self.done) // self.total

    def counts(self) -> dict[str, int]:
        """The figures the commands print with --json."""
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "skipped": self.skipped,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "remaining": self.remaining,
        }


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


def _dispatch(job: RegenerationJob, *, now: datetime | None = None) -> None:
    """Hand "run job J" to the job's cluster once the current transaction commits.

    The heartbeat is touched now, so recover() does not send a second runner while this
    one waits in the queue.
    """
    from django_q.tasks import async_task

    RegenerationJob.objects.filter(pk=job.pk).update(runner_heartbeat=now or timezone.now())
    job_id, queue = job.pk, job.queue
    transaction.on_commit(
        lambda: async_task(
            "metadata.tasks.run_job",
            job_id,
            q_options={"cluster": queue, "task_name": f"job-{job_id}"},
        )
    )


def enqueue(job: RegenerationJob) -> None:
    """draft -> queued, then a runner on the job's queue (in sync mode: run to the end)."""
    _move_job(job, to=JobState.QUEUED, sources={JobState.DRAFT})
    _dispatch(job)


def run_inline(job: RegenerationJob, *, on_item: Callable[[], None] | None = None) -> None:
    """draft -> queued -> worked to the end in this process, with no cluster.

    For ``import_media --inline`` and the demo seed: nothing goes on a queue. Should this
    process die half-way, the job is an ordinary unfinished job: recover() gives it a
    runner on its cluster. ``on_item`` is called after each item is worked (a progress bar).
    """
    # The heartbeat now, so recover() does not send a cluster runner to a job this process
    # is about to start.
    _move_job(job, to=JobState.QUEUED, sources={JobState.DRAFT}, runner_heartbeat=timezone.now())
    _run(job_id=job.pk, to_the_end=True, on_item=on_item)


def pause(job: RegenerationJob, *, reason: str) -> None:
    """Runners stop before their next item; in-flight calls are still recorded."""
    _move_job(
        job, to=JobState.PAUSED, sources={JobState.QUEUED, JobState.RUNNING}, pause_reason=reason
    )


def resume(job: RegenerationJob) -> None:
    _move_job(job, to=JobState.QUEUED, sources={JobState.PAUSED}, pause_reason="")
    _dispatch(job)


def cancel(job: RegenerationJob) -> None:
    """Pending items are cancelled at once; a claimed item finishes (its call is paid for)
    or is cancelled when its runner lets go of it."""
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
        job = RegenerationJob.objects.create(
            kind=kind,
            queue=queue,
            created_by=created_by,
            options=options or {},
            scope=scope if scope is not None else {"ids": unique_ids},
            retry_of=retry_of,
            account=account or Account.objects.current(),
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


def claim(*, job_id: int, batch_size: int, lease_seconds: float) -> list[ClaimedItem]:
    """Take up to ``batch_size`` due pending items: count the attempt, set a lease.

    Items whose attempts already ran out (their worker died, or lost its lease, each
    time) fail here with the reason instead of being opened again.
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
                if JobItem.objects.filter(pk=item_id, state=ItemState.PENDING).update(
                    state=ItemState.CLAIMED,
                    attempts=F("attempts") + 1,
                    lease_token=token,
                    lease_expires_at=expires,
                    updated_at=now,
                ):
                    claimed.append(
                        ClaimedItem(
                            id=item_id, asset_id=asset_id, attempts=attempts + 1, lease_token=token
                        )
                    )
    return claimed


def _held(item_id: int, lease_token: uuid.UUID):
    return JobItem.objects.filter(pk=item_id, state=ItemState.CLAIMED, lease_token=lease_token)


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


def retry_later(*, item_id: int, lease_token: uuid.UUID, not_before: datetime, error: str) -> bool:
    """claimed -> pending, due at ``not_before`` (backoff without holding the item)."""
    return _let_go(
        item_id, lease_token, state=ItemState.PENDING, not_before=not_before, error=error
    )


def release_item(*, item_id: int, lease_token: uuid.UUID) -> bool:
    """Let go of an item without using up its attempt (a pause, a hand-over, a cancel).

    If its job was cancelled meanwhile, the item is cancelled instead of pending.
    """
    cancelled = (
        _held(item_id, lease_token)
        .filter(job__state=JobState.CANCELLED)
        .update(
            state=ItemState.CANCELLED,
            error="cancelled",
            lease_token=None,
            lease_expires_at=None,
            updated_at=timezone.now(),
        )
    )
    if cancelled:
        return True
    return _let_go(item_id, lease_token, state=ItemState.PENDING, attempts=F("attempts") - 1)


# -- reading -----------------------------------------------------------------------------


def progress(job: RegenerationJob) -> Progress:
    """Counts per item state in one aggregate query, whatever the number of items."""
    counts = JobItem.objects.filter(job_id=job.pk).aggregate(
        total=Count("id"),
        **{state.value: Count("id", filter=Q(state=state)) for state in ItemState},
    )
    return Progress(**counts)


# -- reading a job for a person ----------------------------------------------------------

# Nothing moves a job out of these: its page stops polling, the CLI stops following.
FINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED})
# Images per minute count the items finished in this window (or since the runner last
# started, if later), so a pause or a slow first call does not drag the figure for ever.
RATE_WINDOW = timedelta(minutes=2)
# Below this much measured time the rate is noise (one fast item would say 600 a minute).
RATE_MIN_SECONDS = 5.0
FAILURES_SHOWN = 50
_WORKED_STATES = (ItemState.SUCCEEDED, ItemState.SKIPPED, ItemState.FAILED)


@dataclass(frozen=True)
class Failure:
    item_id: int
    asset_id: int
    name: str
    reason: str


@dataclass(frozen=True)
class Summary:
    """What a job's page and the CLI show: counts, money, speed and what failed."""

    job: RegenerationJob
    progress: Progress
    credits_spent: int  # bundled credits captured for this job, net of refunds
    requests_used: int  # BYOK requests counted against the monthly cap
    images_per_minute: float | None  # None: not measurable (not started, paused)
    seconds_left: float | None  # None: unknown (no rate yet, or nothing to do)
    failures: list[Failure]  # the first few by item id; progress.failed counts them all

    @property
    def final(self) -> bool:
        return self.job.state in FINAL_JOB_STATES

    @property
    def failures_not_shown(self) -> int:
        return self.progress.failed - len(self.failures)


def failures(job: RegenerationJob, *, limit: int | None = FAILURES_SHOWN) -> list[Failure]:
    """The job's failed items with their reasons, in item order (one query)."""
    rows = (
        JobItem.objects.filter(job_id=job.pk, state=ItemState.FAILED)
        .order_by("id")
        .values_list("id", "asset_id", "asset__original_name", "error")
    )
    if limit is not None:
        rows = rows[:limit]
    return [
        Failure(item_id=item_id, asset_id=asset_id, name=name, reason=error)
        for item_id, asset_id, name, error in rows
    ]


def job_summary(
    job: RegenerationJob, *, now: datetime | None = None, failures_shown: int = FAILURES_SHOWN
) -> Summary:
    """The job as read by the caller, with its items and ledger summed up.

    Three queries at most (item counts, ledger sums, the first failures), whether the job
    has ten items or a hundred thousand: the page polls this every second.
    """
    from billing.models import EntryKind, LedgerEntry, Unit

    now = now or timezone.now()
    window_start = now - RATE_WINDOW
    if job.started_at is not None and job.started_at > window_start:
        window_start = job.started_at
    counts = JobItem.objects.filter(job_id=job.pk).aggregate(
        total=Count("id"),
        recent=Count("id", filter=Q(state__in=_WORKED_STATES, updated_at__gte=window_start)),
        **{state.value: Count("id", filter=Q(state=state)) for state in ItemState},
    )
    recent = counts.pop("recent")
    counted = Progress(**counts)
    # Captures are negative entries and refunds positive ones, both carrying the job id.
    spent = LedgerEntry.objects.filter(
        job_id=job.pk, kind__in=[EntryKind.CAPTURE, EntryKind.REFUND]
    ).aggregate(
        credits=Sum("amount", filter=Q(unit=Unit.CREDIT)),
        requests=Sum("amount", filter=Q(unit=Unit.REQUEST)),
    )

    rate: float | None = None
    if job.state == JobState.RUNNING:
        measured = (now - window_start).total_seconds()
        if measured >= RATE_MIN_SECONDS:
            rate = recent * 60 / measured
    elif job.state in FINAL_JOB_STATES and job.started_at and job.finished_at:
        # The last run's average (started_at is reset by each resume).
        measured = (job.finished_at - job.started_at).total_seconds()
        worked = counted.succeeded + counted.skipped + counted.failed
        if measured >= RATE_MIN_SECONDS:
            rate = worked * 60 / measured
    seconds_left: float | None = None
    if job.state in {JobState.QUEUED, JobState.RUNNING} and rate:
        seconds_left = counted.remaining * 60 / rate
    return Summary(
        job=job,
        progress=counted,
        credits_spent=-(spent["credits"] or 0),
        requests_used=-(spent["requests"] or 0),
        images_per_minute=rate,
        seconds_left=seconds_left,
        failures=failures(job, limit=failures_shown) if counted.failed else [],
    )


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
    """Expired leases back to pending; a job with work and no live runner gets one.

    Runs every minute from the "mediaopt.recover" schedule and may be called directly.
    Safe to run anywhere at any time: every change is a conditional UPDATE.
    """
    now = now or timezone.now()
    expired = JobItem.objects.filter(state=ItemState.CLAIMED, lease_expires_at__lt=now)
    released = expired.filter(job__state=JobState.CANCELLED).update(
        state=ItemState.CANCELLED,
        error="cancelled",
        lease_token=None,
        lease_expires_at=None,
        updated_at=now,
    )
    # The attempt stays counted: a worker that died on this image used it up.
    released += expired.update(
        state=ItemState.PENDING, lease_token=None, lease_expires_at=None, updated_at=now
    )

    # Holds of workers that died between hold and capture: nothing is spent twice or lost.
    released_holds = ledger.release_expired(now=now)
    stale = now - timedelta(seconds=runner_stale_seconds())
    requeued: list[int] = []
    completed: list[int] = []
    for job in RegenerationJob.objects.unfinished():
        if job.state == JobState.RUNNING and complete_if_done(job):
            completed.append(job.pk)
            continue
        if not JobItem.objects.filter(job=job, state=ItemState.PENDING).exists():
            continue
        # Conditional, so two recoveries at once send one runner, not two.
        if (
            RegenerationJob.objects.filter(pk=job.pk)
            .filter(Q(runner_heartbeat__isnull=True) | Q(runner_heartbeat__lt=stale))
            .update(runner_heartbeat=now)
        ):
            requeued.append(job.pk)
            _dispatch(job, now=now)
    if released or released_holds or requeued or completed:
        logger.info(
            "recover: %s lease(s) and %s hold(s) released, jobs %s re-enqueued, jobs %s completed",
            released,
            released_holds,
            requeued,
            completed,
        )
    return Recovery(released=released, requeued=requeued, completed=completed)


# -- the runner --------------------------------------------------------------------------


# How often a working runner touches runner_heartbeat: far inside runner_stale_seconds()
# (the lease length), so recover() still sees a live runner, without a write per item.
HEARTBEAT_INTERVAL = 1.0


def _heartbeat(job_id: int, *, touch: bool = True) -> str | None:
    """Say this job has a live runner (unless ``touch`` is False); return its current state."""
    if touch:
        RegenerationJob.objects.filter(pk=job_id).update(runner_heartbeat=timezone.now())
    return RegenerationJob.objects.filter(pk=job_id).values_list("state", flat=True).first()


def _options(job: RegenerationJob, row: Settings) -> generation.GenerationOptions:
    opts = job.options or {}
    fields = opts.get("fields")
    return generation.GenerationOptions.from_settings(
        row,
        work=JOB_WORK.get(job.kind, gate.WorkKind.BULK),
        fields=tuple(name for name in FIELDS if name in fields) if fields else None,
        strategy=opts.get("strategy"),
        per_field=opts.get("per_field"),
        force=opts.get("force"),
        review=opts.get("review"),
        focus_keywords=opts.get("focus_keywords"),
    )


def _is_sync() -> bool:
    from django_q.conf import Conf

    return bool(Conf.SYNC)


def concurrency() -> int:
    """Provider calls in flight at once per runner. Worker threads make only the HTTP call;
    the runner's thread opens images and does every database write. With 2.5 s a call,
    600 calls a minute need about 25 in flight (one at a time gives 24 a minute); the
    shared rate limiter, not this, keeps the provider's limit."""
    return max(int(_tuning("MEDIAOPT_JOB_CONCURRENCY", 4)), 1)


@dataclass
class _Run:
    job: RegenerationJob
    row: Settings
    options: generation.GenerationOptions
    decision: gate.Decision
    account: Account
    # DESIGN.md fallback rule (b): uploads and imports may fall back to the heuristic;
    # other jobs never do.
    fallback: bool

    @functools.cached_property
    def limiter(self) -> ratelimit.Limiter:
        return generation.rate_limiter(row=self.row, decision=self.decision)


@dataclass(frozen=True)
class _Ready:
    """An item whose image is open: the limiter, the lease, the hold and the call are left."""

    item: ClaimedItem
    asset: MediaAsset
    request: DescribeRequest
    tokens: int


def _prepare(run: _Run, item: ClaimedItem) -> _Ready | bool:
    """Runner thread, before any call: open the image. Returns _Ready, or True when the
    item was finished here (a broken image fails; a job without AI uses the heuristic)."""
    asset = MediaAsset.objects.get(pk=item.asset_id)
    if not run.decision.uses_ai:
        _finish_with_heuristic(run, item, asset)
        return True
    try:
        request = generation.ai_request(asset=asset, row=run.row, options=run.options)
    except images.ImageError as error:
        fail_item(item_id=item.id, lease_token=item.lease_token, error=error.reason)
        return True
    return _Ready(
        item=item,
        asset=asset,
        request=request,
        tokens=generation.estimated_tokens(request=request, row=run.row),
    )


def _reserve(run: _Run, ready: _Ready) -> str | bool:
    """Runner thread, once the limiter admitted the call: extend the lease and hold the
    credit (no hold, no call; after the image opened, so a broken file never touches
    credits). Returns the hold's key, or True/False when the item ended here (False: the
    job must stop)."""
    item = ready.item
    # One transaction (one commit) for both writes; the hold's own atomic block is a
    # savepoint inside it, so a refused hold still leaves the lease extended.
    with transaction.atomic():
        if not extend_lease(item_id=item.id, lease_token=item.lease_token, seconds=lease_seconds()):
            _lease_lost(item.id)
            return True
        try:
            return _hold(run, item)
        except ledger.InsufficientCredits as error:
            short = error  # acted on outside the transaction
    if not run.fallback:
        release_item(item_id=item.id, lease_token=item.lease_token)
        with contextlib.suppress(IllegalTransition):
            pause(run.job, reason=str(short))
        return False
    _finish_with_heuristic(run, item, ready.asset)
    return True


def _conclude(run: _Run, ready: _Ready, hold_key: str, call: generation.AICall) -> bool:
    """Runner thread, after the call: the limiter learns from the answer, then the result
    is written under the lease, or the error decides: retry later, fail, fall back or
    pause. Returns False when the job must stop (paused for a person to act)."""
    generation.report_ai_call(limiter=run.limiter, call=call)
    item = ready.item
    if call.error is not None:
        ledger.release(hold_key=hold_key)
        verdict = _after_provider_error(run, item, call.error)
        if verdict != "heuristic":
            return verdict == "done"
        logger.warning(
            "AI failed for asset %s (%s); using the heuristic", ready.asset.pk, call.error.reason
        )
        _finish_with_heuristic(run, item, ready.asset)
        return True
    assert call.result is not None
    finish_item(
        item_id=item.id,
        lease_token=item.lease_token,
        result=call.result,
        source=Source.AI,
        options=run.options,
        hold_key=hold_key,
    )
    return True


def _finish_with_heuristic(run: _Run, item: ClaimedItem, asset: MediaAsset) -> None:
    result = generation.describe_with_heuristic(asset=asset, row=run.row, options=run.options)
    source = Source.HEURISTIC if result.provider == "heuristic" else Source.AI
    finish_item(
        item_id=item.id,
        lease_token=item.lease_token,
        result=result,
        source=source,
        options=run.options,
    )


def _hold(run: _Run, item: ClaimedItem) -> str:
    """Hold one credit (or one request of a BYOK cap) for this attempt; returns its key.

    The key belongs to the item's claim, so retrying the hold within it replays it.
    The hold expires with the lease; recover() releases it if this worker dies.
    """
    # The lease token too: a pause gives the attempt back, so the next claim reuses the
    # attempt number, and must not replay the hold released at the pause.
    key = f"{ledger.hold_key(item_id=item.id, attempt=item.attempts)}:{item.lease_token.hex}"
    ledger.hold(
        account=run.account,
        amount=1,
        idempotency_key=key,
        expires_at=timezone.now() + timedelta(seconds=lease_seconds()),
        job_id=run.job.pk,
        item_id=item.id,
    )
    return key


def _after_provider_error(
    run: _Run, item: ClaimedItem, error: ProviderError
) -> Literal["stop", "done", "heuristic"]:
    """Decide what a failed call means for its item: retry later, fail, fall back, or pause.

    "stop": the job was paused for a person to act; "done": the item was handed back or
    failed; "heuristic": the item is still ours and the heuristic writes it (uploads only).
    """
    if error.kind in {ErrorKind.AUTH, ErrorKind.QUOTA}:
        if run.fallback:
            return "heuristic"
        # A person must act; this image is not to blame, so its attempt is not spent.
        release_item(item_id=item.id, lease_token=item.lease_token)
        # Cancelled or paused meanwhile: stopping is right either way.
        with contextlib.suppress(IllegalTransition):
            pause(run.job, reason=error.reason)
        return "stop"
    if error.retryable and item.attempts < max_attempts():
        delay = backoff_delay(
            item.attempts,
            base_delay=float(settings.MEDIAOPT_RETRY_BASE_SECONDS),
            retry_after=error.retry_after,
        )
        retry_later(
            item_id=item.id,
            lease_token=item.lease_token,
            not_before=timezone.now() + timedelta(seconds=delay),
            error=error.reason,
        )
        return "done"
    if run.fallback:
        return "heuristic"
    reason = error.reason
    if error.retryable:
        reason = f"gave up after {item.attempts} attempts: {error.reason}"
    fail_item(item_id=item.id, lease_token=item.lease_token, error=reason)
    return "done"


def _earliest_due(job_id: int) -> datetime | None:
    return JobItem.objects.filter(job_id=job_id, state=ItemState.PENDING).aggregate(
        due=Min("not_before")
    )["due"]


def run_job(*, job_id: int) -> None:
    """Work a job: claim small batches, describe, finish under the lease; repeat.

    Re-reads the job's state before each item, so pause and cancel take effect within
    one item. In sync mode it runs to the end; on a cluster it hands over (re-enqueues
    itself) after ``MEDIAOPT_JOB_RUN_SECONDS``, well inside django-q2's timeout.
    """
    _run(job_id=job_id, to_the_end=_is_sync())


def _run(*, job_id: int, to_the_end: bool, on_item: Callable[[], None] | None = None) -> None:
    job = RegenerationJob.objects.filter(pk=job_id).first()
    if job is None:
        return
    if job.state == JobState.QUEUED:
        try:
            start(job)
        except IllegalTransition:
            job.refresh_from_db()  # another runner started it, or it was paused/cancelled
    if job.state != JobState.RUNNING:
        return
    if job.kind == JobKind.UNDO:
        deadline = None if to_the_end else time.monotonic() + run_budget_seconds()
        worked = _work_undo(job, deadline=deadline, on_item=on_item)
        logger.info("undo job %s: this runner worked %s item(s)", job_id, worked)
        return

    row = Settings.objects.current()
    if (job.options or {}).get("language"):
        row.language = job.options["language"]  # this job's language; the row is not saved
    options = _options(job, row)
    account = job.account or Account.objects.current()
    decision = gate.decide(
        work=options.work, images=progress(job).total, account=account, model=row.model
    )
    if decision.mode == gate.Mode.REFUSED:
        with contextlib.suppress(IllegalTransition):
            pause(job, reason=decision.reason)
        return
    run = _Run(
        job=job,
        row=row,
        options=options,
        decision=decision,
        account=account,
        fallback=options.work in {gate.WorkKind.UPLOAD, gate.WorkKind.IMPORT}
        and row.heuristic_fallback,
    )
    deadline = None if to_the_end else time.monotonic() + run_budget_seconds()
    worked = _work(run, deadline=deadline, on_item=on_item)
    logger.info("job %s: this runner worked %s item(s)", job_id, worked)


def _paused_for_review(job: RegenerationJob) -> bool:
    """Pause for review once ``options["pause_after"]`` images are done ("Try on 10 first").

    The option is dropped as the job pauses, so Resume runs the rest without stopping.
    """
    limit = (job.options or {}).get("pause_after")
    if not limit:
        return False
    done = JobItem.objects.filter(job_id=job.pk, state__in=_WORKED_STATES).count()
    if done < limit:
        return False
    with transaction.atomic():
        try:
            pause(job, reason=f"Paused after the first {limit} images for review.")
        except IllegalTransition:
            return True  # paused or cancelled meanwhile: stopping is right either way
        options = {key: value for key, value in job.options.items() if key != "pause_after"}
        RegenerationJob.objects.filter(pk=job.pk).update(options=options)
        job.options = options
    return True


class _Flight:
    """Calls in flight on worker threads, and the runner-thread work after each item.

    Threads run only generation.send_ai_call (HTTP, no database); every conclusion (the
    limiter's lesson, the revision, the ledger) is written by ``collect`` on the runner's
    thread.
    """

    def __init__(self, run: _Run, *, width: int, on_item: Callable[[], None] | None = None) -> None:
        self.run = run
        self.width = width
        self.on_item = on_item
        self.calls: dict[Future[generation.AICall], tuple[_Ready, str]] = {}
        self.worked = 0
        self.stopped = False  # an item said the job must stop: start no new call
        self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="provider-call")

    @property
    def full(self) -> bool:
        return len(self.calls) >= self.width

    def send(self, ready: _Ready, hold_key: str) -> None:
        run = self.run
        future = self._pool.submit(
            generation.send_ai_call, request=ready.request, row=run.row, decision=run.decision
        )
        self.calls[future] = (ready, hold_key)

    def item_done(self, keep_going: bool) -> None:
        """After each item: the progress callback, "Try on 10 first", a stop."""
        self.worked += 1
        if self.on_item is not None:
            self.on_item()
        if keep_going and _paused_for_review(self.run.job):
            keep_going = False
        if not keep_going:
            self.stopped = True

    def collect(self, *, timeout: float | None) -> None:
        """Conclude the calls that ended (waiting up to ``timeout`` for the first)."""
        if not self.calls:
            return
        done, _ = wait(self.calls, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            ready, hold_key = self.calls.pop(future)
            self.item_done(_conclude(self.run, ready, hold_key, future.result()))

    def drain(self) -> None:
        """Calls already made are recorded and charged, whatever happened to the job."""
        try:
            while self.calls:
                self.collect(timeout=None)
        finally:
            self._pool.shutdown(wait=True)


# How often a runner waiting for the limiter re-reads its job (pause, cancel) and beats.
_STATE_CHECK_SECONDS = 1.0


def _admit(flight: _Flight, ready: _Ready, *, still_running: Callable[[], bool]) -> bool:
    """Wait for the shared limiter to admit this call, concluding finished calls meanwhile.

    False when the job stopped running (or this runner's time is up) first.
    """
    limiter = flight.run.limiter
    next_check = time.monotonic() + _STATE_CHECK_SECONDS
    while True:
        wait_seconds = limiter.try_acquire(tokens=ready.tokens)
        if wait_seconds <= 0:
            return True
        if flight.stopped:
            return False
        if time.monotonic() >= next_check:
            if not still_running():
                return False
            next_check = time.monotonic() + _STATE_CHECK_SECONDS
        nap = min(wait_seconds, _STATE_CHECK_SECONDS)
        if flight.calls:
            flight.collect(timeout=nap)
        else:
            time.sleep(nap)


def _work(run: _Run, *, deadline: float | None, on_item: Callable[[], None] | None = None) -> int:
    """The runner's loop; returns how many items it worked (for the log).

    Claims as many items as there is room for calls in flight (MEDIAOPT_JOB_CONCURRENCY;
    one for a "Try on 10 first" job, so it stops after exactly ten). Before each new call
    it re-reads the job, so pause and cancel stop new calls at once; calls in flight end
    and are written before the runner returns or hands over.
    """
    job, job_id, lease = run.job, run.job.pk, lease_seconds()
    width = 1 if (job.options or {}).get("pause_after") else concurrency()
    flight = _Flight(run, width=width, on_item=on_item)
    hand_over = False

    def over_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    last_beat = [-math.inf]

    def beat() -> str | None:
        # The state is read every time (pause and cancel are seen before each new call);
        # the heartbeat is written at most once per HEARTBEAT_INTERVAL.
        now = time.monotonic()
        touch = now - last_beat[0] >= HEARTBEAT_INTERVAL
        if touch:
            last_beat[0] = now
        return _heartbeat(job_id, touch=touch)

    def still_running() -> bool:
        return beat() == JobState.RUNNING and not over_time()

    try:
        while True:
            flight.collect(timeout=0)
            if flight.stopped or beat() != JobState.RUNNING:
                return flight.worked
            if over_time():
                hand_over = True  # well inside django-q2's timeout
                return flight.worked
            if flight.full:
                flight.collect(timeout=None)
                continue
            room = flight.width - len(flight.calls)
            batch = claim(job_id=job_id, batch_size=min(batch_size(), room), lease_seconds=lease)
            if not batch:
                if flight.calls:
                    flight.collect(timeout=None)  # the last items are in flight
                    continue
                if complete_if_done(job):
                    return flight.worked
                due = _earliest_due(job_id)
                if due is None:
                    return flight.worked  # other runners hold the last items
                # Only backed-off items remain: wait for the first, in short slices so the
                # heartbeat stays fresh and a pause is seen.
                nap = (due - timezone.now()).total_seconds()
                time.sleep(min(max(nap, 0.05), max_sleep_seconds()))
                continue
            for index, item in enumerate(batch):
                state = beat()
                if state != JobState.RUNNING or over_time() or flight.stopped:
                    for rest in batch[index:]:
                        release_item(item_id=rest.id, lease_token=rest.lease_token)
                    hand_over = state == JobState.RUNNING and over_time()
                    return flight.worked
                ready = _prepare(run, item)
                if not isinstance(ready, _Ready):
                    flight.item_done(ready)
                    continue
                if not _admit(flight, ready, still_running=still_running):
                    for rest in batch[index:]:
                        release_item(item_id=rest.id, lease_token=rest.lease_token)
                    hand_over = not flight.stopped and over_time()
                    return flight.worked
                hold_key = _reserve(run, ready)
                if not isinstance(hold_key, str):
                    flight.item_done(hold_key)
                    continue
                flight.send(ready, hold_key)
    finally:
        flight.drain()
        if hand_over and _heartbeat(job_id) == JobState.RUNNING:
            _dispatch(job)


# -- undo --------------------------------------------------------------------------------

# Undo items are local work (a few queries per batch, one UPDATE per image, no provider):
# large claims, written in chunks of one transaction each, the job's state re-read before
# each chunk so pause and cancel still stop it within a fraction of a second.
UNDO_BATCH = 100
UNDO_CHUNK = 25


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


def _work_undo(
    job: RegenerationJob, *, deadline: float | None, on_item: Callable[[], None] | None = None
) -> int:
    """The undo runner's loop: claim, undo in chunks, complete. Never calls a provider,
    never touches credits. Returns how many items it worked."""
    job_id, worked, hand_over = job.pk, 0, False
    if job.undo_of_id is None:
        with contextlib.suppress(IllegalTransition):
            fail(job, reason="The job this undo was for no longer exists.")
        return 0
    try:
        while True:
            if _heartbeat(job_id) != JobState.RUNNING:
                return worked
            if deadline is not None and time.monotonic() >= deadline:
                hand_over = True
                return worked
            batch = claim(job_id=job_id, batch_size=UNDO_BATCH, lease_seconds=lease_seconds())
            if not batch:
                complete_if_done(job)
                return worked
            for start_at in range(0, len(batch), UNDO_CHUNK):
                if start_at and _heartbeat(job_id, touch=False) != JobState.RUNNING:
                    for rest in batch[start_at:]:
                        release_item(item_id=rest.id, lease_token=rest.lease_token)
                    return worked
                chunk = batch[start_at : start_at + UNDO_CHUNK]
                finish_undo_items(items=chunk, job=job)
                worked += len(chunk)
                if on_item is not None:
                    on_item()  # once per chunk: a progress bar reads the counts
    finally:
        if hand_over and _heartbeat(job_id) == JobState.RUNNING:
            _dispatch(job)
