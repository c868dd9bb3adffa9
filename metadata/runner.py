"""The runner that works a job: claim small batches, open each image, ask the limiter,
hold a credit, send the call on a worker thread, conclude it on the runner's thread; hand
over to a new task in time; undo jobs in chunks.

Every write of a job or item row goes through jobs.py; this module decides the order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime

from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from billing import gate
from billing.models import Account
from mediaopt.library.fields import FIELDS
from metadata import (
    generation,
    items,
    jobs,
    language,
    pacing,
    progress,
    runner_slots,
    steps,
    undo_runner,
)
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
from metadata.providers.base import ProviderError

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
    """The most provider calls a runner keeps in flight at once (its worker threads): a
    cap, not a target. Within it the runner keeps as many as the limits and the latency
    it observes call for (metadata/pacing.py); the shared rate limiter, not this, keeps
    the provider's limit."""
    return max(int(settings.MEDIAOPT_JOB_CONCURRENCY), 1)


def _earliest_due(job_id: int) -> datetime | None:
    return JobItem.objects.filter(job_id=job_id, state=ItemState.PENDING).aggregate(
        due=Min("not_before")
    )["due"]


def run_job(*, job_id: int, runner_token: uuid.UUID | None = None, slot: int = 0) -> None:
    """Work a job: claim small batches, describe, finish under the lease; repeat.

    Re-reads the job's state before each item, so pause and cancel take effect within
    one item. In sync mode it runs to the end; on a cluster it hands over (re-enqueues
    itself) after ``MEDIAOPT_JOB_RUN_SECONDS``, well inside django-q2's timeout. ``slot``
    1 and up: one of the job's extra runners (runner_slots.py), dispatched by the first.
    """
    _run(job_id=job_id, to_the_end=_is_sync(), dispatched=runner_token, force=False, slot=slot)


def _run(
    *,
    job_id: int,
    to_the_end: bool,
    on_item: Callable[[], None] | None = None,
    dispatched: uuid.UUID | None = None,
    force: bool = True,
    slot: int = 0,
) -> None:
    """Work the job as its first runner: a delivered task (``force`` False) only with the
    token it was dispatched with, or if the job has no live runner; this process's own
    call (inline, ``force``) in any case. As an extra runner (``slot``) only with the
    slot's token, and only once the first started the job."""
    job = RegenerationJob.objects.filter(pk=job_id).first()
    if job is None or job.state not in {JobState.QUEUED, JobState.RUNNING}:
        return
    if slot and (job.state != JobState.RUNNING or job.kind == JobKind.UNDO):
        return
    if job.kind != JobKind.UNDO:
        # Every result is checked, and the first check of a process builds the language
        # detector (seconds): built before taking the job, this runner holds no lease and
        # no runner token meanwhile, so nothing expires under it.
        language.warm_up()
    seat = runner_slots.take_seat(job_id=job_id, slot=slot, dispatched=dispatched, force=force)
    if seat is None:
        # A duplicate delivery, or a task older than the runner it was meant to be.
        if slot:
            logger.info("job %s has a live runner %s; this delivery exits", job_id, slot)
        else:
            logger.info("job %s has a live runner; this delivery exits", job_id)
        return
    handed_over = False
    try:
        handed_over = _run_as(job, seat=seat, to_the_end=to_the_end, on_item=on_item)
    finally:
        if not handed_over:
            seat.let_go()


def _run_as(
    job: RegenerationJob,
    *,
    seat: runner_slots.Seat,
    to_the_end: bool,
    on_item: Callable[[], None] | None,
) -> bool:
    """Work the job from ``seat``; True if it handed over to a new task."""
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
        worked, handed_over = undo_runner.work_undo(
            job, token=seat.token, deadline=deadline, on_item=on_item
        )
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
    run = steps.Run(
        job=job,
        row=row,
        options=options,
        decision=decision,
        account=account,
        fallback=options.work in {gate.WorkKind.UPLOAD, gate.WorkKind.IMPORT}
        and row.heuristic_fallback,
        seat=seat,
    )
    if not seat.slot and not to_the_end and decision.uses_ai:
        # Calls to make: the job's extra runners join (on a cluster; none inline).
        runner_slots.fill(job)
    deadline = None if to_the_end else time.monotonic() + jobs.run_budget_seconds()
    worked, handed_over = _work(run, deadline=deadline, on_item=on_item)
    logger.info("job %s: this runner worked %s item(s)", job_id, worked)
    return handed_over


class _Flight:
    """Calls in flight on worker threads, and the runner-thread work after each item.

    Threads run only generation.send_ai_call (HTTP, no database); every conclusion (the
    limiter's lesson, the revision, the ledger) is written by ``collect`` on the runner's
    thread. How many calls it keeps in flight (``width``, at most ``cap``) the pacing
    controller decides from the limits and what the answers show.
    """

    def __init__(
        self, run: steps.Run, *, cap: int, on_item: Callable[[], None] | None = None
    ) -> None:
        self.run = run
        self.pace = pacing.Pace(cap=cap)
        self.on_item = on_item
        self.calls: dict[Future[tuple[generation.AICall, float]], tuple[steps.Ready, str]] = {}
        self.again: list[steps.AskAgain] = []  # second tries waiting for the limiter
        self.worked = 0
        self.stopped = False  # an item said the job must stop: start no new call
        self._pool = ThreadPoolExecutor(max_workers=cap, thread_name_prefix="provider-call")

    @property
    def width(self) -> int:
        limiter = self.run.limiter
        requests, tokens = limiter.allowed_per_second()
        return self.pace.width(
            allowed=pacing.Allowed(requests_per_second=requests, tokens_per_second=tokens),
            tokens_per_call=limiter.tokens_per_call(),
        )

    @property
    def full(self) -> bool:
        return len(self.calls) >= self.width

    def send(self, ready: steps.Ready, hold_key: str) -> None:
        run = self.run
        future = self._pool.submit(
            _timed_call, request=ready.request, row=run.row, decision=run.decision
        )
        self.calls[future] = (ready, hold_key)

    def _observe(self, call: generation.AICall, seconds: float) -> None:
        """The pace learns from the call's own time (a stall of the runner's thread is
        not the provider's latency, and more calls in flight would not shorten it)."""
        now = time.monotonic()
        error = call.error
        self.pace = self.pace.observe(
            seconds=seconds,
            now=now,
            width=self.width,
            rate_limited=bool(error is not None and error.rate_limited),
            headers=call.rate_limit,
        )

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
            call, seconds = future.result()
            self._observe(call, seconds)
            concluded = steps.conclude(self.run, ready, hold_key, call)
            if isinstance(concluded, steps.AskAgain):
                self.again.append(concluded)
            else:
                self.item_done(concluded)

    def settle_second_tries(self) -> None:
        """Second tries that will not be sent (the runner stops): write the first answers."""
        while self.again:
            waiting = self.again.pop()
            assert waiting.ready.first is not None
            steps.write(self.run, waiting.ready, waiting.hold_key, waiting.ready.first)
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


def _timed_call(**kwargs) -> tuple[generation.AICall, float]:
    """Worker thread: one call, and how long it took."""
    started = time.monotonic()
    call = generation.send_ai_call(**kwargs)
    return call, time.monotonic() - started


# How often a runner waiting for the limiter re-reads its job (pause, cancel) and beats.
_STATE_CHECK_SECONDS = 1.0


def _admit(
    flight: _Flight, ready: steps.Ready, *, still_running: Callable[[], bool]
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
    run: steps.Run, *, deadline: float | None, on_item: Callable[[], None] | None = None
) -> tuple[int, bool]:
    """The runner's loop; returns how many items it worked (for the log) and whether it
    handed over to a new task.

    Claims as many items as there is room for calls in flight (the pacing controller's
    width, at most MEDIAOPT_JOB_CONCURRENCY), a batch at a time. Before each new call
    it re-reads the job, so pause and cancel stop new calls at once; calls in flight end
    and are written before the runner returns or hands over. It never blocks longer than
    a heartbeat: every beat renews the leases (and holds) of the items it holds.
    """
    job, job_id, lease = run.job, run.job.pk, jobs.lease_seconds()
    flight = _Flight(run, cap=concurrency(), on_item=on_item)
    unsent: list[ClaimedItem] = []  # claimed by this runner, not yet in flight or done

    def over_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    last_beat = [-math.inf]

    def beat_due() -> bool:
        return time.monotonic() - last_beat[0] >= HEARTBEAT_INTERVAL

    def beat() -> str | None:
        # The state is read every time (pause and cancel are seen before each new call);
        # the heartbeat and the leases are written at most once per HEARTBEAT_INTERVAL.
        now = time.monotonic()
        touch = beat_due()
        if touch:
            last_beat[0] = now
            items.extend_leases(
                job_id=job_id,
                lease_tokens=flight.lease_tokens() + [item.lease_token for item in unsent],
                seconds=lease,
            )
        return run.seat.heartbeat(touch=touch)

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
            if flight.stopped:
                return False
            # Every call is full, so nothing new is sent until one ends: the job is read
            # then (one read per new call), and meanwhile only when the heartbeat is due.
            waiting = flight.full and not over_time() and not beat_due()
            if not waiting and beat() != JobState.RUNNING:
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
                # The first was claimed just after the job was read at the loop's top.
                state = beat() if index else JobState.RUNNING
                if state != JobState.RUNNING or over_time() or flight.stopped:
                    let_go(batch[index:])
                    hand_over = state == JobState.RUNNING and over_time()
                    return hand_over
                ready = steps.prepare(run, item)
                if not isinstance(ready, steps.Ready):
                    unsent.remove(item)
                    flight.item_done(ready)
                    continue
                admitted = _admit(flight, ready, still_running=still_running)
                if isinstance(admitted, ProviderError):
                    unsent.remove(item)
                    verdict = steps.after_provider_error(run, ready.item, admitted)
                    if verdict == "heuristic":
                        steps.finish_with_heuristic(
                            run, ready.item, ready.asset, why=admitted.reason
                        )
                    flight.item_done(verdict != "stop")
                    continue
                if not admitted:
                    let_go([ready.item, *batch[index + 1 :]], first_opened=True)
                    hand_over = not flight.stopped and over_time()
                    return hand_over
                hold_key = steps.reserve(run, ready)
                unsent.remove(item)
                if not isinstance(hold_key, str):
                    flight.item_done(hold_key)
                    continue
                flight.send(ready, hold_key)

    try:
        wants_hand_over = work()
    finally:
        flight.drain(beat=beat)
    handed_over = wants_hand_over and run.seat.heartbeat() == JobState.RUNNING
    return flight.worked, handed_over and run.seat.hand_over(job)
