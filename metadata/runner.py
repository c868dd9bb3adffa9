"""The runner that works a job: claim small batches, open each image, ask the limiter,
hold a credit, send the call on a worker thread, conclude it on the runner's thread; hand
over to a new task in time; undo jobs in chunks.

Every write of a job or item row goes through jobs.py; this module decides the order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from billing import gate, ledger
from billing.models import Account
from mediaopt.library import images
from mediaopt.library.fields import FIELDS, Source
from mediaopt.library.models import MediaAsset
from metadata import checking, generation, items, jobs, progress, ratelimit
from metadata.items import ClaimedItem
from metadata.jobs import IllegalTransition
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    JobState,
    RegenerationJob,
    Settings,
)
from metadata.providers.base import DescribeRequest, DescribeResult, ErrorKind, ProviderError
from metadata.providers.retry import backoff_delay

logger = logging.getLogger(__name__)

JOB_WORK: dict[str, gate.WorkKind] = {
    JobKind.UPLOAD: gate.WorkKind.UPLOAD,
    JobKind.IMPORT: gate.WorkKind.IMPORT,
    JobKind.SINGLE: gate.WorkKind.SINGLE,
}


def run_inline(job: RegenerationJob, *, on_item: Callable[[], None] | None = None) -> None:
    """draft -> queued -> worked to the end in this process, with no cluster.

    For ``import_media --inline`` and the demo seed: nothing goes on a queue. Should this
    process die half-way, the job is an ordinary unfinished job: recover() gives it a
    runner on its cluster. ``on_item`` is called after each item is worked (a progress bar).
    """
    jobs.enqueue_inline(job)
    _run(job_id=job.pk, to_the_end=True, on_item=on_item)


# -- the runner --------------------------------------------------------------------------


# How often a working runner touches runner_heartbeat: far inside runner_stale_seconds()
# (the lease length), so recover() still sees a live runner, without a write per item.
HEARTBEAT_INTERVAL = 1.0


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
    return max(int(settings.MEDIAOPT_JOB_CONCURRENCY), 1)


@dataclass
class _Run:
    job: RegenerationJob
    row: Settings
    options: generation.GenerationOptions
    decision: gate.Decision
    account: Account
    # The fallback rule: uploads and imports may fall back to the heuristic;
    # other jobs never do.
    fallback: bool
    # This runner's token (jobs.take_over): its heartbeat stops it once another took over.
    runner_token: uuid.UUID | None = None

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
    # Set on the second try: the first answer, written if the second call fails.
    first: DescribeResult | None = None


@dataclass(frozen=True)
class _AskAgain:
    """A first answer whose values have error findings: one more call, under the same hold
    (an image costs at most one credit), with the findings as corrections."""

    ready: _Ready
    hold_key: str


def _prepare(run: _Run, item: ClaimedItem) -> _Ready | bool:
    """Runner thread, before any call: open the image. Returns _Ready, or True when the
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
        _finish_with_heuristic(run, item, asset)
        return True
    try:
        request = generation.ai_request(asset=asset, row=run.row, options=run.options)
    except images.ImageError as error:
        items.fail_item(item_id=item.id, lease_token=item.lease_token, error=error.reason)
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
        if not items.extend_lease(
            item_id=item.id, lease_token=item.lease_token, seconds=jobs.lease_seconds()
        ):
            logger.warning("Lost the lease on job item %s: its result is not written.", item.id)
            return True
        try:
            return _hold(run, item)
        except ledger.InsufficientCredits as error:
            short = error  # acted on outside the transaction
    if not run.fallback:
        items.release_item(item_id=item.id, lease_token=item.lease_token, opened=True)
        with contextlib.suppress(IllegalTransition):
            jobs.pause(run.job, reason=str(short))
        return False
    _finish_with_heuristic(run, item, ready.asset)
    return True


def _conclude(run: _Run, ready: _Ready, hold_key: str, call: generation.AICall) -> bool | _AskAgain:
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
        verdict = _after_provider_error(run, item, call.error)
        if verdict != "heuristic":
            return verdict == "done"
        logger.warning(
            "AI failed for asset %s (%s); using the heuristic", ready.asset.pk, call.error.reason
        )
        _finish_with_heuristic(run, item, ready.asset)
        return True
    assert call.result is not None
    if ready.first is None:
        checked = checking.check(result=call.result, language=run.options.language)
        if checking.needs_asking_again(checked, fields=run.options.fields):
            again = dataclasses.replace(ready.request, feedback=checking.feedback(checked))
            return _AskAgain(
                ready=dataclasses.replace(ready, request=again, first=call.result),
                hold_key=hold_key,
            )
    _write(run, ready, hold_key, call.result)
    return True


def _write(run: _Run, ready: _Ready, hold_key: str, result: DescribeResult) -> None:
    items.finish_item(
        item_id=ready.item.id,
        lease_token=ready.item.lease_token,
        result=result,
        source=Source.AI,
        options=run.options,
        hold_key=hold_key,
    )


def _finish_with_heuristic(run: _Run, item: ClaimedItem, asset: MediaAsset) -> None:
    result = generation.describe_with_heuristic(asset=asset, row=run.row, options=run.options)
    source = Source.HEURISTIC if result.provider == "heuristic" else Source.AI
    items.finish_item(
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
        expires_at=timezone.now() + timedelta(seconds=jobs.lease_seconds()),
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


def _earliest_due(job_id: int) -> datetime | None:
    return JobItem.objects.filter(job_id=job_id, state=ItemState.PENDING).aggregate(
        due=Min("not_before")
    )["due"]


def run_job(*, job_id: int, runner_token: uuid.UUID | None = None) -> None:
    """Work a job: claim small batches, describe, finish under the lease; repeat.

    Re-reads the job's state before each item, so pause and cancel take effect within
    one item. In sync mode it runs to the end; on a cluster it hands over (re-enqueues
    itself) after ``MEDIAOPT_JOB_RUN_SECONDS``, well inside django-q2's timeout.
    """
    _run(job_id=job_id, to_the_end=_is_sync(), dispatched=runner_token, force=False)


def _run(
    *,
    job_id: int,
    to_the_end: bool,
    on_item: Callable[[], None] | None = None,
    dispatched: uuid.UUID | None = None,
    force: bool = True,
) -> None:
    """Work the job as its one runner: a delivered task (``force`` False) only with the
    token it was dispatched with, or if the job has no live runner; this process's own
    call (inline, ``force``) in any case."""
    job = RegenerationJob.objects.filter(pk=job_id).first()
    if job is None or job.state not in {JobState.QUEUED, JobState.RUNNING}:
        return
    token = jobs.take_over(job_id=job_id, dispatched=dispatched, force=force)
    if token is None:
        # A duplicate delivery, or a task older than the job's runner: one runner a job.
        logger.info("job %s has a live runner; this delivery exits", job_id)
        return
    handed_over = False
    try:
        handed_over = _run_as(job, token=token, to_the_end=to_the_end, on_item=on_item)
    finally:
        if not handed_over:
            jobs.let_go_of_job(job_id=job_id, runner_token=token)


def _run_as(
    job: RegenerationJob,
    *,
    token: uuid.UUID,
    to_the_end: bool,
    on_item: Callable[[], None] | None,
) -> bool:
    """Work the job as its runner ``token``; True if it handed over to a new task."""
    job_id = job.pk
    if job.state == JobState.QUEUED:
        try:
            jobs.start(job)
        except IllegalTransition:
            job.refresh_from_db()  # another runner started it, or it was paused/cancelled
    if job.state != JobState.RUNNING:
        return False
    if job.kind == JobKind.UNDO:
        deadline = None if to_the_end else time.monotonic() + jobs.run_budget_seconds()
        worked, handed_over = _work_undo(job, token=token, deadline=deadline, on_item=on_item)
        logger.info("undo job %s: this runner worked %s item(s)", job_id, worked)
        return handed_over

    row = Settings.objects.current()
    if (job.options or {}).get("language"):
        row.language = job.options["language"]  # this job's language; the row is not saved
    options = _options(job, row)
    account = job.account or Account.objects.current()
    decision = gate.decide(
        work=options.work, images=progress.progress(job).total, account=account, model=row.model
    )
    if decision.mode == gate.Mode.REFUSED:
        with contextlib.suppress(IllegalTransition):
            jobs.pause(job, reason=decision.reason)
        return False
    run = _Run(
        job=job,
        row=row,
        options=options,
        decision=decision,
        account=account,
        fallback=options.work in {gate.WorkKind.UPLOAD, gate.WorkKind.IMPORT}
        and row.heuristic_fallback,
        runner_token=token,
    )
    deadline = None if to_the_end else time.monotonic() + jobs.run_budget_seconds()
    worked, handed_over = _work(run, deadline=deadline, on_item=on_item)
    logger.info("job %s: this runner worked %s item(s)", job_id, worked)
    return handed_over


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
        self.again: list[_AskAgain] = []  # second tries waiting for the limiter
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
        """After each item: the progress callback, and a stop when the item said so."""
        self.worked += 1
        if self.on_item is not None:
            self.on_item()
        if not keep_going:
            self.stopped = True

    def collect(self, *, timeout: float | None) -> None:
        """Conclude the calls that ended (waiting up to ``timeout`` for the first)."""
        if not self.calls:
            return
        done, _ = wait(self.calls, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            ready, hold_key = self.calls.pop(future)
            concluded = _conclude(self.run, ready, hold_key, future.result())
            if isinstance(concluded, _AskAgain):
                self.again.append(concluded)
            else:
                self.item_done(concluded)

    def settle_second_tries(self) -> None:
        """Second tries that will not be sent (the runner stops): write the first answers."""
        while self.again:
            waiting = self.again.pop()
            assert waiting.ready.first is not None
            _write(self.run, waiting.ready, waiting.hold_key, waiting.ready.first)
            self.item_done(True)

    def lease_tokens(self) -> list[uuid.UUID]:
        held = [ready.item.lease_token for ready, _ in self.calls.values()]
        return held + [waiting.ready.item.lease_token for waiting in self.again]

    def drain(self, *, beat: Callable[[], object]) -> None:
        """Calls already made are recorded and charged, whatever happened to the job; the
        heartbeat goes on meanwhile, so their leases and holds outlive a slow call."""
        try:
            while self.calls:
                self.collect(timeout=HEARTBEAT_INTERVAL)
                beat()
            self.settle_second_tries()
        finally:
            self._pool.shutdown(wait=True)


# How often a runner waiting for the limiter re-reads its job (pause, cancel) and beats.
_STATE_CHECK_SECONDS = 1.0


def _admit(
    flight: _Flight, ready: _Ready, *, still_running: Callable[[], bool]
) -> bool | ProviderError:
    """Wait for the shared limiter to admit this call, concluding finished calls meanwhile.

    False when the job stopped running (or this runner's time is up) first; the error
    when the limiter itself failed (the call then fails as transient).
    """
    limiter = flight.run.limiter
    next_check = time.monotonic() + _STATE_CHECK_SECONDS
    while True:
        # Before asking: an admission counts against the budget, and a call concluded
        # while waiting may have stopped the job (a 401, quota): nothing more is sent.
        if flight.stopped:
            return False
        try:
            wait_seconds = limiter.try_acquire(tokens=ready.tokens)
        except ProviderError as error:
            return error
        if wait_seconds <= 0:
            return True
        if time.monotonic() >= next_check:
            if not still_running():
                return False
            next_check = time.monotonic() + _STATE_CHECK_SECONDS
        nap = min(wait_seconds, _STATE_CHECK_SECONDS)
        if flight.calls:
            flight.collect(timeout=nap)
        else:
            time.sleep(nap)


def _work(
    run: _Run, *, deadline: float | None, on_item: Callable[[], None] | None = None
) -> tuple[int, bool]:
    """The runner's loop; returns how many items it worked (for the log) and whether it
    handed over to a new task.

    Claims as many items as there is room for calls in flight (MEDIAOPT_JOB_CONCURRENCY).
    Before each new call
    it re-reads the job, so pause and cancel stop new calls at once; calls in flight end
    and are written before the runner returns or hands over. It never blocks longer than
    a heartbeat: every beat renews the leases (and holds) of the items it holds.
    """
    job, job_id, lease = run.job, run.job.pk, jobs.lease_seconds()
    flight = _Flight(run, width=concurrency(), on_item=on_item)
    unsent: list[ClaimedItem] = []  # claimed by this runner, not yet in flight or done

    def over_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    last_beat = [-math.inf]

    def beat() -> str | None:
        # The state is read every time (pause and cancel are seen before each new call);
        # the heartbeat and the leases are written at most once per HEARTBEAT_INTERVAL.
        now = time.monotonic()
        touch = now - last_beat[0] >= HEARTBEAT_INTERVAL
        if touch:
            last_beat[0] = now
            items.extend_leases(
                job_id=job_id,
                lease_tokens=flight.lease_tokens() + [item.lease_token for item in unsent],
                seconds=lease,
            )
        return jobs.heartbeat(job_id=job_id, runner_token=run.runner_token, touch=touch)

    def still_running() -> bool:
        return beat() == JobState.RUNNING and not over_time()

    def let_go(claimed: list[ClaimedItem], *, first_opened: bool = False) -> None:
        for index, rest in enumerate(claimed):
            opened = first_opened and index == 0
            items.release_item(item_id=rest.id, lease_token=rest.lease_token, opened=opened)
        unsent.clear()

    def work() -> bool:
        """Until the job stops or time is up; True when it wants to hand over."""
        while True:
            flight.collect(timeout=0)
            if flight.stopped or beat() != JobState.RUNNING:
                return False
            if over_time():
                return True
            if flight.full:
                flight.collect(timeout=HEARTBEAT_INTERVAL)
                continue
            if flight.again:
                # A second try goes before new images: its image is open and its credit held.
                waiting = flight.again.pop(0)
                admitted = _admit(flight, waiting.ready, still_running=still_running)
                if admitted is True:
                    flight.send(waiting.ready, waiting.hold_key)
                else:
                    flight.again.insert(0, waiting)
                    if not admitted:
                        return not flight.stopped and over_time()
                    flight.settle_second_tries()  # the limiter failed: keep the first answers
                continue
            room = flight.width - len(flight.calls)
            batch = items.claim(
                job_id=job_id, batch_size=min(jobs.batch_size(), room), lease_seconds=lease
            )
            if not batch:
                if flight.calls:
                    flight.collect(timeout=HEARTBEAT_INTERVAL)  # the last items are in flight
                    continue
                if jobs.complete_if_done(job):
                    return False
                due = _earliest_due(job_id)
                if due is None:
                    return False  # other runners hold the last items
                # Only backed-off items remain: wait for the first, in short slices so the
                # heartbeat stays fresh and a pause is seen.
                nap = (due - timezone.now()).total_seconds()
                time.sleep(min(max(nap, 0.05), jobs.max_sleep_seconds(), HEARTBEAT_INTERVAL))
                continue
            unsent[:] = batch
            for index, item in enumerate(batch):
                state = beat()
                if state != JobState.RUNNING or over_time() or flight.stopped:
                    let_go(batch[index:])
                    hand_over = state == JobState.RUNNING and over_time()
                    return hand_over
                ready = _prepare(run, item)
                if not isinstance(ready, _Ready):
                    unsent.remove(item)
                    flight.item_done(ready)
                    continue
                admitted = _admit(flight, ready, still_running=still_running)
                if isinstance(admitted, ProviderError):
                    unsent.remove(item)
                    verdict = _after_provider_error(run, ready.item, admitted)
                    if verdict == "heuristic":
                        _finish_with_heuristic(run, ready.item, ready.asset)
                    flight.item_done(verdict != "stop")
                    continue
                if not admitted:
                    let_go([ready.item, *batch[index + 1 :]], first_opened=True)
                    hand_over = not flight.stopped and over_time()
                    return hand_over
                hold_key = _reserve(run, ready)
                unsent.remove(item)
                if not isinstance(hold_key, str):
                    flight.item_done(hold_key)
                    continue
                flight.send(ready, hold_key)

    try:
        wants_hand_over = work()
    finally:
        flight.drain(beat=beat)
    handed_over = wants_hand_over and (
        jobs.heartbeat(job_id=job_id, runner_token=run.runner_token) == JobState.RUNNING
    )
    if handed_over:
        jobs.dispatch(job)
    return flight.worked, handed_over


# -- undo --------------------------------------------------------------------------------

# Undo items are local work (a few queries per batch, one UPDATE per image, no provider):
# large claims, written in chunks of one transaction each, the job's state re-read before
# each chunk so pause and cancel still stop it within a fraction of a second.
UNDO_BATCH = 100
UNDO_CHUNK = 25


def _work_undo(
    job: RegenerationJob,
    *,
    token: uuid.UUID,
    deadline: float | None,
    on_item: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """The undo runner's loop: claim, undo in chunks, complete. Never calls a provider,
    never touches credits. Returns how many items it worked and whether it handed over."""
    job_id, worked, hand_over = job.pk, 0, False
    if job.undo_of_id is None:
        with contextlib.suppress(IllegalTransition):
            jobs.fail(job, reason="The job this undo was for no longer exists.")
        return 0, False
    try:
        while True:
            if jobs.heartbeat(job_id=job_id, runner_token=token) != JobState.RUNNING:
                return worked, False
            if deadline is not None and time.monotonic() >= deadline:
                hand_over = True
                break
            # No image is opened: the attempt is counted as the items are claimed.
            batch = items.claim(
                job_id=job_id,
                batch_size=UNDO_BATCH,
                lease_seconds=jobs.lease_seconds(),
                count_attempt=True,
            )
            if not batch:
                jobs.complete_if_done(job)
                return worked, False
            for start_at in range(0, len(batch), UNDO_CHUNK):
                if start_at and (
                    jobs.heartbeat(job_id=job_id, runner_token=token, touch=False)
                    != JobState.RUNNING
                ):
                    for rest in batch[start_at:]:
                        items.release_item(
                            item_id=rest.id, lease_token=rest.lease_token, opened=True
                        )
                    return worked, False
                chunk = batch[start_at : start_at + UNDO_CHUNK]
                items.finish_undo_items(items=chunk, job=job)
                worked += len(chunk)
                if on_item is not None:
                    on_item()  # once per chunk: a progress bar reads the counts
    finally:
        if hand_over and jobs.heartbeat(job_id=job_id, runner_token=token) == JobState.RUNNING:
            jobs.dispatch(job)
        else:
            hand_over = False
    return worked, hand_over
