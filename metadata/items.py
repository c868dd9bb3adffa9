"""The item half of the one writer of job and item rows (with ``metadata.jobs`` and
``metadata.recovery``): claim an item under a lease, open it, renew and let go of leases,
and write what became of it (finish, fail, retry later, release, cancel, undo).

Every write of a result is guarded by the lease token: a worker that lost its lease (it
froze, recovery gave the item to another) writes nothing. Attempts are counted when an
item's image is opened, so an image that kills its worker fails after N attempts instead
of coming back for ever.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    Exists,
    F,
    OuterRef,
    Q,
    Subquery,
    TextField,
    Value,
    When,
)
from django.utils import timezone

from billing import ledger
from metadata import counts, generation, jobs, revisions
from metadata.models import (
    FINAL_JOB_STATES,
    ItemState,
    JobItem,
    MetadataRevision,
    RegenerationJob,
)
from metadata.providers.base import DescribeResult

# A succeeded item's note when the heuristic wrote it instead of AI, before the reason.
FALLBACK_NOTE = "heuristic instead of AI: "

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class ClaimedItem:
    id: int
    asset_id: int
    attempts: int
    lease_token: uuid.UUID


# -- item transitions --------------------------------------------------------------------


def claim(
    *, job_id: int, batch_size: int, lease_seconds: float, count_attempt: bool = False
) -> list[ClaimedItem]:
    """Take up to ``batch_size`` due pending items under a lease, in one statement.

    One ``UPDATE ... WHERE id IN (SELECT ... ORDER BY not_before, id LIMIT n [FOR UPDATE
    SKIP LOCKED]) RETURNING``, served by the claim index (job, state, not_before, id): on
    PostgreSQL several runners of one job take disjoint items without waiting for each
    other; SQLite (one writer, RETURNING since 3.35) serialises it. Each item gets its own
    lease token from the database.

    The attempt is counted by open_item, when the runner opens the image: batch mates of
    an image that kills its worker lose nothing. ``count_attempt`` counts it here instead,
    for work that opens no image (undo). Items whose attempts already ran out (their
    worker died on them each time) fail in the same statement instead of being opened.
    """
    limit = jobs.max_attempts()
    ops, qn = connection.ops, connection.ops.quote_name
    table = qn(JobItem._meta.db_table)
    lock = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    claimed_state, failed_state = ItemState.CLAIMED.value, ItemState.FAILED.value
    pg = connection.vendor == "postgresql"
    # A token per item, made by the database (PostgreSQL 13+; 32 hex digits on SQLite).
    new_token = "gen_random_uuid()" if pg else "lower(hex(randomblob(16)))"
    as_time = "CAST(%s AS timestamp with time zone)" if pg else "%s"
    sql = (
        f"UPDATE {table} SET "
        f"{qn('state')} = CASE WHEN {qn('attempts')} >= %s THEN %s ELSE %s END, "
        f"{qn('error')} = CASE WHEN {qn('attempts')} >= %s THEN "
        f"'gave up after ' || {qn('attempts')} || ' attempts (the worker died while "
        f"processing this image)' ELSE {qn('error')} END, "
        f"{qn('attempts')} = CASE WHEN {qn('attempts')} >= %s THEN {qn('attempts')} "
        f"ELSE {qn('attempts')} + %s END, "
        f"{qn('lease_token')} = CASE WHEN {qn('attempts')} >= %s THEN NULL ELSE {new_token} END, "
        f"{qn('lease_expires_at')} = CASE WHEN {qn('attempts')} >= %s THEN NULL "
        f"ELSE {as_time} END, "
        f"{qn('updated_at')} = %s "
        f"WHERE {qn('id')} IN (SELECT {qn('id')} FROM {table} "
        f"WHERE {qn('job_id')} = %s AND {qn('state')} = %s AND {qn('not_before')} <= %s "
        f"ORDER BY {qn('not_before')}, {qn('id')} LIMIT %s{lock}) "
        f"RETURNING {qn('id')}, {qn('asset_id')}, {qn('attempts')}, {qn('state')}, "
        f"{qn('not_before')}, {qn('lease_token')}"
    )
    claimed: list[ClaimedItem] = []
    while True:
        now = timezone.now()
        expires = now + timedelta(seconds=lease_seconds)
        params = [
            limit,
            failed_state,
            claimed_state,
            limit,
            limit,
            1 if count_attempt else 0,
            limit,
            limit,
            ops.adapt_datetimefield_value(expires),
            ops.adapt_datetimefield_value(now),
            job_id,
            ItemState.PENDING.value,
            ops.adapt_datetimefield_value(now),
            batch_size,
        ]
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
            counts.moved(
                job_id=job_id, state=failed_state, n=sum(row[3] == failed_state for row in rows)
            )
        # RETURNING keeps no order: the claim's order is (not_before, id).
        rows.sort(key=lambda row: (str(row[4]), row[0]))
        claimed = [
            ClaimedItem(
                id=item_id,
                asset_id=asset_id,
                attempts=attempts,
                lease_token=token if isinstance(token, uuid.UUID) else uuid.UUID(hex=token),
            )
            for item_id, asset_id, attempts, state, _, token in rows
            if state == claimed_state
        ]
        # Only items whose attempts ran out (now failed): claim again for live ones.
        if claimed or not rows:
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
    fallback_reason: str = "",
) -> bool:
    """Write a result under the lease: revision, asset fields, item state and, for a paid
    call, the credit capture, together.

    ``fallback_reason``: why the heuristic wrote it instead of AI (an upload's fallback),
    kept on the succeeded item after ``FALLBACK_NOTE`` so its job page can say why.

    Credits are spent only when the result changed the image; otherwise (and when the lease
    was lost, in which case nothing is written and False is returned) the hold is released.
    """
    captured = False
    with transaction.atomic():
        # The item first, locked: the row lock (PostgreSQL; SQLite's IMMEDIATE transaction
        # holds the write lock already) that recover()'s conditional UPDATE would need,
        # and the proof that the lease is still ours, in the read of the item.
        now = timezone.now()
        item = (
            _held(item_id, lease_token)
            .select_for_update(of=("self",))
            .select_related("job", "asset")
            .first()
        )
        if item is None:
            _lease_lost(item_id)
            if hold_key:
                ledger.release(hold_key=hold_key)
            return False
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
        if state == ItemState.SUCCEEDED and fallback_reason and not error:
            error = f"{FALLBACK_NOTE}{fallback_reason}"
        JobItem.objects.filter(pk=item_id).update(
            state=state,
            error=error,
            revision=outcome.revision,
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
        )
        counts.moved(job_id=item.job_id, state=state)
        if hold_key and outcome.charged:
            ledger.capture(hold_key=hold_key, capture_key=ledger.capture_key(item_id=item_id))
            captured = True
    if hold_key and not captured:
        ledger.release(hold_key=hold_key)
    return True


def _let_go(item_id: int, lease_token: uuid.UUID, **fields) -> bool:
    """Move a held item out of ``claimed`` and clear its lease, counted on its job if that
    was to a final state (decided in the statement: see pending_unless_finished); False
    if the lease was lost."""
    with transaction.atomic():
        rows = counts.update_returning(
            _held(item_id, lease_token),
            lease_token=None,
            lease_expires_at=None,
            updated_at=timezone.now(),
            **fields,
        )
        counts.moved_rows(rows)
    if rows:
        return True
    _lease_lost(item_id)
    return False


def fail_item(*, item_id: int, lease_token: uuid.UUID, error: str) -> bool:
    """claimed -> failed with a reason a person can read. False if the lease was lost."""
    return _let_go(item_id, lease_token, state=ItemState.FAILED, error=error)


def pending_unless_finished() -> Case:
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


def error_unless_finished(error: str | None) -> Case:
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
        state=pending_unless_finished(),
        not_before=not_before,
        error=error_unless_finished(error),
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
        state=pending_unless_finished(),
        error=error_unless_finished(None),
        **fields,
    )


def cancel_item(*, item_id: int, lease_token: uuid.UUID, error: str) -> bool:
    """claimed -> cancelled (its image was deleted). False if the item or lease is gone."""
    return _let_go(item_id, lease_token, state=ItemState.CANCELLED, error=error)


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
            n = JobItem.objects.filter(pk__in=ids).update(
                state=state,
                error=error,
                conflicts=list(conflicts),
                revision=Subquery(own_revision.values("pk")[:1]),
                lease_token=None,
                lease_expires_at=None,
                updated_at=now,
            )
            counts.moved(job_id=job.pk, state=state, n=n)
    return len(mine)
