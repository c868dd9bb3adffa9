"""The steps a runner takes for one image, in order: open it (prepare), hold its credit
once the limiter admitted the call (reserve), and, after the call, write the answer, ask
again once when the checks find an error, or let the error decide (conclude).

Every write of a job or item row goes through jobs.py and items.py; the runner
(runner.py) decides when each step runs and keeps the threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import gate, ledger
from billing.models import Account
from mediaopt.library import images
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import checking, generation, items, jobs, ratelimit, runner_slots
from metadata.items import ClaimedItem
from metadata.jobs import IllegalTransition
from metadata.models import RegenerationJob, Settings
from metadata.providers.base import DescribeRequest, DescribeResult, ErrorKind, ProviderError
from metadata.providers.retry import backoff_delay

logger = logging.getLogger(__name__)


@dataclass
class Run:
    job: RegenerationJob
    row: Settings
    options: generation.GenerationOptions
    decision: gate.Decision
    account: Account
    # The fallback rule: uploads and imports may fall back to the heuristic;
    # other jobs never do.
    fallback: bool
    # Where this runner sits (runner_slots.Seat): its heartbeat stops it once another
    # runner took its place.
    seat: runner_slots.Seat

    @functools.cached_property
    def limiter(self) -> ratelimit.Limiter:
        return generation.rate_limiter(row=self.row, decision=self.decision)


@dataclass(frozen=True)
class Ready:
    """An item whose image is open: the limiter, the lease, the hold and the call are left."""

    item: ClaimedItem
    asset: MediaAsset
    request: DescribeRequest
    tokens: int
    # Set on the second try: the first answer, written if the second call fails.
    first: DescribeResult | None = None


@dataclass(frozen=True)
class AskAgain:
    """A first answer whose values have error findings: one more call, under the same hold
    (an image costs at most one credit), with the findings as corrections."""

    ready: Ready
    hold_key: str


def prepare(run: Run, item: ClaimedItem) -> Ready | bool:
    """Runner thread, before any call: open the image. Returns Ready, or True when the
    item was finished here (a broken image fails, a deleted one is cancelled; a job without
    AI uses the heuristic). The attempt is counted now, for this item alone."""
    opened = items.open_item(item=item, lease_seconds=jobs.lease_seconds())
    if opened is None:
        return True  # the lease was lost: another runner has it now
    item = opened
    asset = MediaAsset.objects.filter(pk=item.asset_id).first()
    if asset is None:
        # Deleted during the job (its item usually goes with it): nothing to do here.
        items.cancel_item(item_id=item.id, lease_token=item.lease_token, error="image deleted")
        return True
    if not run.decision.uses_ai:
        finish_with_heuristic(run, item, asset, why=run.decision.reason)
        return True
    try:
        request = generation.ai_request(asset=asset, row=run.row, options=run.options)
    except images.ImageError as error:
        items.fail_item(item_id=item.id, lease_token=item.lease_token, error=error.reason)
        return True
    return Ready(
        item=item,
        asset=asset,
        request=request,
        tokens=generation.estimated_tokens(request=request, row=run.row),
    )


def reserve(run: Run, ready: Ready) -> str | bool:
    """Runner thread, once the limiter admitted the call: extend the lease and hold the
    credit (no hold, no call; after the image opened, so a broken file never touches
    credits). Returns the hold's key, or True/False when the item ended here (False: the
    job must stop)."""
    item = ready.item
    # One transaction (one commit) for both writes; the hold's own atomic block is a
    # savepoint inside it, so a refused hold still leaves the lease extended.
    with transaction.atomic():
        if not items.extend_lease(
            item_id=item.id, lease_token=item.lease_token, seconds=jobs.lease_seconds()
        ):
            logger.warning("Lost the lease on job item %s: its result is not written.", item.id)
            return True
        try:
            return hold(run, item)
        except ledger.InsufficientCredits as error:
            short = error  # acted on outside the transaction
    if not run.fallback:
        items.release_item(item_id=item.id, lease_token=item.lease_token, opened=True)
        with contextlib.suppress(IllegalTransition):
            jobs.pause(run.job, reason=str(short))
        return False
    finish_with_heuristic(run, item, ready.asset, why=str(short))
    return True


def conclude(run: Run, ready: Ready, hold_key: str, call: generation.AICall) -> bool | AskAgain:
    """Runner thread, after the call: the limiter learns from the answer, then the result
    is written under the lease, or asked for once more when the checks find an error, or
    the error decides: retry later, fail, fall back or pause. Returns False when the job
    must stop (paused for a person to act)."""
    generation.report_ai_call(limiter=run.limiter, call=call)
    item = ready.item
    if call.error is not None and ready.first is not None:
        # The second try failed: the first answer was paid for and is kept (as a proposal,
        # since it had errors), never lost.
        call = generation.AICall(result=ready.first)
    if call.error is not None:
        ledger.release(hold_key=hold_key)
        verdict = after_provider_error(run, item, call.error)
        if verdict != "heuristic":
            return verdict == "done"
        logger.warning(
            "AI failed for asset %s (%s); using the heuristic", ready.asset.pk, call.error.reason
        )
        finish_with_heuristic(run, item, ready.asset, why=call.error.reason)
        return True
    assert call.result is not None
    if ready.first is None:
        checked = checking.check(result=call.result, language=run.options.language)
        if checking.needs_asking_again(checked, fields=run.options.fields):
            again = dataclasses.replace(ready.request, feedback=checking.feedback(checked))
            return AskAgain(
                ready=dataclasses.replace(ready, request=again, first=call.result),
                hold_key=hold_key,
            )
    write(run, ready, hold_key, call.result)
    return True


def write(run: Run, ready: Ready, hold_key: str, result: DescribeResult) -> None:
    items.finish_item(
        item_id=ready.item.id,
        lease_token=ready.item.lease_token,
        result=result,
        source=Source.AI,
        options=run.options,
        hold_key=hold_key,
    )


def finish_with_heuristic(run: Run, item: ClaimedItem, asset: MediaAsset, *, why: str) -> None:
    """The heuristic's result for an upload that gets no AI; ``why`` is kept on the item."""
    result = generation.describe_with_heuristic(asset=asset, row=run.row, options=run.options)
    source = Source.HEURISTIC if result.provider == "heuristic" else Source.AI
    items.finish_item(
        item_id=item.id,
        lease_token=item.lease_token,
        result=result,
        source=source,
        options=run.options,
        fallback_reason=why if source == Source.HEURISTIC else "",
    )


def hold(run: Run, item: ClaimedItem) -> str:
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
        expires_at=timezone.now() + timedelta(seconds=jobs.lease_seconds()),
        job_id=run.job.pk,
        item_id=item.id,
    )
    return key


def after_provider_error(
    run: Run, item: ClaimedItem, error: ProviderError
) -> Literal["stop", "done", "heuristic"]:
    """Decide what a failed call means for its item: retry later, fail, fall back, or pause.

    "stop": the job was paused for a person to act; "done": the item was handed back or
    failed; "heuristic": the item is still ours and the heuristic writes it (uploads only).
    """
    if error.kind in {ErrorKind.AUTH, ErrorKind.QUOTA}:
        if run.fallback:
            return "heuristic"
        # A person must act; this image is not to blame, so its attempt is not spent.
        items.release_item(item_id=item.id, lease_token=item.lease_token, opened=True)
        # Cancelled or paused meanwhile: stopping is right either way.
        with contextlib.suppress(IllegalTransition):
            jobs.pause(run.job, reason=error.reason)
        return "stop"
    if error.retryable and item.attempts < jobs.max_attempts():
        delay = backoff_delay(
            item.attempts,
            base_delay=float(settings.MEDIAOPT_RETRY_BASE_SECONDS),
            retry_after=error.retry_after,
        )
        items.retry_later(
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
    items.fail_item(item_id=item.id, lease_token=item.lease_token, error=reason)
    return "done"
