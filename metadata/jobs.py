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
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from billing import gate, ledger
from billing.models import Account
from mediaopt import images
from mediaopt.models import MediaAsset
from metadata import generation
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    JobQueue,
    JobState,
    RegenerationJob,
    Settings,
)
from metadata.providers.base import DescribeResult, ErrorKind, ProviderError
from metadata.providers.retry import backoff_delay
from metadata.schema import FIELDS, Source

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
        )
        if not outcome.ok:
            state, error = ItemState.FAILED, outcome.reason
        elif outcome.revision is None:
            state, error = ItemState.SKIPPED, outcome.reason or "nothing to change"
        else:
            state, error = ItemState.SUCCEEDED, ""
        JobItem.objects.filter(pk=item_id).update(
            state=state, error=error, revision=outcome.revision, updated_at=now
        )
        if hold_key and outcome.revision is not None:
            ledger.capture(hold_key=hold_key, capture_key=ledger.capture_key(item_id=item_id))
            captured = True
    if hold_key and not captured:
        ledger.release(hold_key=hold_key)
    return True


def fail_item(*, item_id: int, lease_token: uuid.UUID, error: str) -> bool:
    """claimed -> failed with a reason a person can read. False if the lease was lost."""
    if _held(item_id, lease_token).update(
        state=ItemState.FAILED,
        error=error,
        lease_token=None,
        lease_expires_at=None,
        updated_at=timezone.now(),
    ):
        return True
    _lease_lost(item_id)
    return False


def retry_later(*, item_id: int, lease_token: uuid.UUID, not_before: datetime, error: str) -> bool:
    """claimed -> pending, due at ``not_before`` (backoff without holding the item)."""
    if _held(item_id, lease_token).update(
        state=ItemState.PENDING,
        not_before=not_before,
        error=error,
        lease_token=None,
        lease_expires_at=None,
        updated_at=timezone.now(),
    ):
        return True
    _lease_lost(item_id)
    return False


def release_item(*, item_id: int, lease_token: uuid.UUID) -> bool:
    """Let go of an item without using up its attempt (a pause, a hand-over, a cancel).

    If its job was cancelled meanwhile, the item is cancelled instead of pending.
    """
    now = timezone.now()
    held = _held(item_id, lease_token)
    cancelled = held.filter(job__state=JobState.CANCELLED).update(
        state=ItemState.CANCELLED,
        error="cancelled",
        lease_token=None,
        lease_expires_at=None,
        updated_at=now,
    )
    if cancelled:
        return True
    if held.update(
        state=ItemState.PENDING,
        attempts=F("attempts") - 1,
        lease_token=None,
        lease_expires_at=None,
        updated_at=now,
    ):
        return True
    _lease_lost(item_id)
    return False


# -- reading -----------------------------------------------------------------------------


def progress(job: RegenerationJob) -> Progress:
    """Counts per item state in one aggregate query, whatever the number of items."""
    counts = JobItem.objects.filter(job_id=job.pk).aggregate(
        total=Count("id"),
        **{state.value: Count("id", filter=Q(state=state)) for state in ItemState},
    )
    return Progress(**counts)


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


def _heartbeat(job_id: int) -> str | None:
    """Say this job has a live runner; return the job's current state."""
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
    )


def _is_sync() -> bool:
    from django_q.conf import Conf

    return bool(Conf.SYNC)


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


def _process(run: _Run, item: ClaimedItem) -> bool:
    """Work one claimed item to an end (finished, failed, retry later or released).

    Returns False when the job must stop (paused for a person to act).
    """
    asset = MediaAsset.objects.get(pk=item.asset_id)
    heuristic = not run.decision.uses_ai
    result: DescribeResult | None = None
    hold_key: str | None = None
    if not heuristic:
        try:
            request = generation.ai_request(asset=asset, row=run.row, options=run.options)
        except images.ImageError as error:
            fail_item(item_id=item.id, lease_token=item.lease_token, error=error.reason)
            return True
        # No hold, no call: the hold is made after the image opened, so a broken file
        # never touches credits.
        try:
            hold_key = _hold(run, item)
        except ledger.InsufficientCredits as error:
            if not run.fallback:
                release_item(item_id=item.id, lease_token=item.lease_token)
                with contextlib.suppress(IllegalTransition):
                    pause(run.job, reason=str(error))
                return False
            heuristic = True
    if not heuristic:
        try:
            # The only step a worker thread will take over (bounded HTTP concurrency).
            result = generation.call_ai_once(request=request, row=run.row, decision=run.decision)
        except ProviderError as error:
            ledger.release(hold_key=hold_key)
            hold_key = None
            verdict = _after_provider_error(run, item, error)
            if verdict != "heuristic":
                return verdict == "done"
            logger.warning(
                "AI failed for asset %s (%s); using the heuristic", asset.pk, error.reason
            )
            heuristic = True
    if heuristic:
        result = generation.describe_with_heuristic(asset=asset, row=run.row, options=run.options)
    assert result is not None
    source = Source.HEURISTIC if result.provider == "heuristic" else Source.AI
    finish_item(
        item_id=item.id,
        lease_token=item.lease_token,
        result=result,
        source=source,
        options=run.options,
        hold_key=hold_key,
    )
    return True


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

    row = Settings.objects.current()
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


def _work(run: _Run, *, deadline: float | None, on_item: Callable[[], None] | None = None) -> int:
    """The runner's loop; returns how many items it worked (for the log)."""
    job, job_id, lease = run.job, run.job.pk, lease_seconds()
    worked = 0

    def over_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    while True:
        if _heartbeat(job_id) != JobState.RUNNING:
            return worked
        if over_time():
            _dispatch(job)  # hand over well inside django-q2's timeout
            return worked
        batch = claim(job_id=job_id, batch_size=batch_size(), lease_seconds=lease)
        if not batch:
            if complete_if_done(job):
                return worked
            due = _earliest_due(job_id)
            if due is None:
                return worked  # other runners hold the last items; whoever ends completes
            # Only backed-off items remain: wait for the first, in short slices so the
            # heartbeat stays fresh and a pause is seen.
            wait = (due - timezone.now()).total_seconds()
            time.sleep(min(max(wait, 0.05), max_sleep_seconds()))
            continue
        for index, item in enumerate(batch):
            state = _heartbeat(job_id)
            if state != JobState.RUNNING or over_time():
                for rest in batch[index:]:
                    release_item(item_id=rest.id, lease_token=rest.lease_token)
                if state == JobState.RUNNING:
                    _dispatch(job)
                return worked
            if not extend_lease(item_id=item.id, lease_token=item.lease_token, seconds=lease):
                _lease_lost(item.id)
                continue
            worked += 1
            keep_going = _process(run, item)
            if on_item is not None:
                on_item()
            if not keep_going:
                for rest in batch[index + 1 :]:
                    release_item(item_id=rest.id, lease_token=rest.lease_token)
                return worked
