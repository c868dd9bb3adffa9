"""Bulk regeneration: a selection kept server-side as a draft, a preview, a confirmation.

The admin's bulk action (and "Regenerate all" on the settings page) stores only the scope
in a draft job: the selected ids, the changelist's filter for "select all across pages", or
a named scope. A draft has no items, so drafting makes no image busy and costs the same
whatever the selection's size; the confirmation page then posts only the draft's id and
the options (a POST of every id would exceed DATA_UPLOAD_MAX_NUMBER_FIELDS).

Items are made at confirmation, in one statement, and only for images that need a paid
call under the chosen strategy. Confirmation is the conditional draft -> queued move, so a
double click makes one job.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import reduce
from typing import Literal
from urllib.parse import urlencode

from django.db import transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, QuerySet, Window
from django.db.models.functions import Mod, RowNumber

from billing import estimate as costs
from billing import gate
from billing.models import Account
from mediaopt.library.fields import FIELDS, Source
from mediaopt.library.models import MediaAsset
from metadata import creation, jobs, library_filters
from metadata.models import (
    FINAL_JOB_STATES,
    JobItem,
    JobKind,
    JobQueue,
    JobState,
    RegenerationJob,
    Settings,
    Strategy,
)
from metadata.strategies import field_strategy

ALL = "all"
MISSING_ALT_TEXT = "missing_alt_text"
NAMED_SCOPES = {ALL: "all images", MISSING_ALT_TEXT: "all images missing alt text"}

PARTIAL = "partial"
DONT_START = "dont_start"
Shortfall = Literal["partial", "dont_start"]

# "Try on 20 first": that many images, spread over the selection, in review mode.
TRY_FIRST = 20


class ScopeError(Exception):
    """A draft's scope cannot be read any more (e.g. a filter the admin no longer has)."""


@dataclass(frozen=True)
class BulkOptions:
    """What a person chose on the confirmation page; stored in ``job.options``."""

    fields: tuple[str, ...] = FIELDS
    strategy: str = Strategy.FILL_EMPTY
    per_field: Mapping[str, str] = field(default_factory=dict)
    force: bool = False  # also replace fields edited by hand
    language: str = ""  # empty: the settings' language when the job runs
    focus_keywords: str = ""
    review: bool = False  # every result waits for a person (proposals)

    @classmethod
    def defaults(cls, row: Settings | None = None) -> BulkOptions:
        row = row or Settings.objects.current()
        return cls(
            fields=tuple(name for name in FIELDS if name in row.default_fields),
            strategy=row.default_strategy,
            language=row.language,
            review=row.review_by_default,
        )

    @classmethod
    def from_dict(cls, stored: Mapping) -> BulkOptions:
        """What as_dict stored (a job's options), read back."""
        return cls(
            fields=tuple(name for name in FIELDS if name in stored.get("fields", FIELDS)),
            strategy=stored.get("strategy", Strategy.FILL_EMPTY),
            per_field=stored.get("per_field") or {},
            force=bool(stored.get("force")),
            language=stored.get("language", ""),
            focus_keywords=stored.get("focus_keywords", ""),
            review=bool(stored.get("review")),
        )

    def as_dict(self) -> dict:
        options: dict = {
            "fields": list(self.fields),
            "strategy": self.strategy,
            "force": self.force,
        }
        if self.strategy == Strategy.PER_FIELD:
            options["per_field"] = {name: self.per_field.get(name, "") for name in self.fields}
        if self.language:
            options["language"] = self.language
        if self.focus_keywords:
            options["focus_keywords"] = self.focus_keywords
        if self.review:
            options["review"] = True
        return options


@dataclass(frozen=True)
class BulkPreview:
    """What the confirmation page shows before anything starts."""

    images: int  # in the scope
    busy: int  # of those, held by another active job
    needing_call: int  # not busy, and with something to write under the options
    decision: gate.Decision
    estimate: costs.Estimate | None  # None when the gate gives no paid AI
    # The lowest and highest id of the images needing a call (None, None: there are none),
    # from the same query, so creating the items need not aggregate the scope again.
    bounds: tuple[int | None, int | None] = (None, None)

    @property
    def nothing_to_do(self) -> int:
        return self.images - self.busy - self.needing_call

    @property
    def enough(self) -> bool:
        return self.estimate is None or self.estimate.enough

    @property
    def refused(self) -> str:
        return self.decision.reason if self.decision.mode == gate.Mode.REFUSED else ""


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation did: a queued job, or why nothing started."""

    job: RegenerationJob
    started: bool
    items: int = 0
    busy_count: int = 0  # images that needed work but another job holds them
    nothing_to_do: int = 0  # images with nothing to write under the options
    already_confirmed: bool = False  # a second click: ``job`` is the one the first made
    preparing: bool = False  # a large job: a task adds its items, then queues it
    message: str = ""  # why nothing started, for a person


# -- drafting ----------------------------------------------------------------------------


def filter_query(params: Mapping[str, str | list[str]]) -> str:
    """The changelist's filter as a query string, without paging or view parameters."""
    kept = {
        key: value if isinstance(value, list) else [value]
        for key, value in params.items()
        if key not in library_filters.NOT_FILTERS
    }
    return urlencode(sorted(kept.items()), doseq=True)


def draft_bulk(
    *,
    actor,
    asset_ids: list[int] | None = None,
    filter_params: Mapping[str, str | list[str]] | None = None,
    kind: str = JobKind.BULK,
    missing_alt_text_only: bool = False,
) -> RegenerationJob:
    """A draft job holding only its scope: ids, a changelist filter, or a named scope
    (every image, or every image missing alt text). No items, so no image is busy yet."""
    if asset_ids is not None:
        chosen = list(dict.fromkeys(int(pk) for pk in asset_ids))
        if len(chosen) > jobs.MAX_LISTED_IDS:
            raise ScopeError(
                f"{len(chosen):,} images are selected one by one; more than "
                f"{jobs.MAX_LISTED_IDS:,} must be chosen with a filter (select all)."
            )
        scope: dict = {"ids": chosen}
    elif filter_params is not None:
        scope = {"filter": filter_query(filter_params)}
    else:
        scope = {"named": MISSING_ALT_TEXT if missing_alt_text_only else ALL}
    return jobs.create_draft(kind=kind, queue=JobQueue.BULK, created_by=actor, scope=scope)


def describe_scope(job: RegenerationJob) -> str:
    """The draft's scope in words, as the confirmation page says it."""
    scope = job.scope or {}
    if scope.get("after_trial") is not None:
        rest = {k: v for k, v in scope.items() if k != "after_trial"}
        return f"{_describe(rest)}, without the images tried in job #{scope['after_trial']}"
    return _describe(scope)


def _describe(scope: dict) -> str:
    if "ids" in scope:
        count = len(scope["ids"])
        return "the selected image" if count == 1 else f"the {count:,} selected images"
    if "id_range" in scope:
        lo, hi = scope["id_range"]
        return f"{scope.get('images', 0):,} new images (ids {lo:,} to {hi:,})"
    if "retry_of" in scope:
        return f"the images that failed in job #{scope['retry_of']}"
    if "undo_of" in scope:
        return f"the images job #{scope['undo_of']} changed"
    if "filter" in scope:
        try:
            return library_filters.describe(scope["filter"])
        except library_filters.UnknownFilter:
            return f"the library's filter {scope['filter']!r}, which no longer applies"
    return NAMED_SCOPES.get(scope.get("named", ""), "—")


def scope_queryset(job: RegenerationJob) -> QuerySet[MediaAsset]:
    """The images of the draft's scope, as they are now (without those a trial worked,
    for "run the remaining")."""
    scope = job.scope or {}
    trial = scope.get("after_trial")
    chosen = _selection(job, scope)
    if trial is not None:
        chosen = chosen.exclude(pk__in=JobItem.objects.filter(job_id=trial).values("asset_id"))
    return chosen


def _selection(job: RegenerationJob, scope: dict) -> QuerySet[MediaAsset]:
    if "ids" in scope:
        return MediaAsset.objects.filter(pk__in=scope["ids"])
    if "filter" in scope:
        try:
            return library_filters.replay(scope["filter"])
        except library_filters.UnknownFilter as error:
            raise ScopeError(
                f"The library's filter no longer applies ({scope['filter']})."
            ) from error
    named = scope.get("named")
    if named == ALL:
        return MediaAsset.objects.all()
    if named == MISSING_ALT_TEXT:
        return MediaAsset.objects.missing_alt_text()
    raise ScopeError(f"Job {job.pk} has no scope this version understands: {scope!r}.")


# -- which images need a call ------------------------------------------------------------


def _busy() -> Exists:
    return Exists(JobItem.objects.active().filter(asset_id=OuterRef("pk")))


def needs_call(options: BulkOptions) -> Q:
    """Images with something to write under ``options`` (strategies.py's rules as SQL).

    A heuristic value counts as empty; a field edited by hand is kept unless forced; a
    decorative image's empty alt text is not missing.
    """
    wanted: list[Q] = []
    for name in options.fields:
        source = f"{name}_source"
        strategy = field_strategy(name, strategy=options.strategy, per_field=options.per_field)
        if strategy == Strategy.OVERWRITE:
            writes = Q(pk__isnull=False)  # every image (Q() would vanish from an OR)
        else:
            writes = Q(**{name: ""}) | Q(**{source: Source.HEURISTIC})
            if name == "alt_text":
                writes &= ~Q(alt_text="", is_decorative=True)
        if not options.force:
            writes &= ~(Q(**{source: Source.MANUAL}) & ~Q(**{name: ""}))
        wanted.append(writes)
    if not wanted:
        return Q(pk__in=[])
    return reduce(operator.or_, wanted)


def _count_assets(assets: QuerySet[MediaAsset], options: BulkOptions) -> dict:
    """Images in scope, busy ones, not-busy ones needing a call, and the id bounds of
    those needing one: one aggregate over the scope."""
    busy = _busy()
    wanted = needs_call(options)
    return assets.order_by().aggregate(
        images=Count("pk"),
        busy=Count("pk", filter=Q(busy)),
        needing=Count("pk", filter=wanted & ~Q(busy)),
        lo=Min("pk", filter=wanted),
        hi=Max("pk", filter=wanted),
    )


def preview(*, job: RegenerationJob, options: BulkOptions) -> BulkPreview:
    """Counts, the gate's answer and the estimate: a few queries whatever the scope's size
    (the scope is aggregated once)."""
    counts = _count_assets(scope_queryset(job), options)
    return _priced(**counts, account=job.account or Account.objects.current())


def preview_assets(*, assets: QuerySet[MediaAsset], options: BulkOptions) -> BulkPreview:
    """``preview`` of a page of images chosen elsewhere (the command line), by the same
    cost rule: the gate decides, and only paid AI work is estimated."""
    return _priced(**_count_assets(assets, options), account=Account.objects.current())


def _priced(
    *, images: int, busy: int, needing: int, lo: int | None, hi: int | None, account: Account
) -> BulkPreview:
    row = Settings.objects.current()
    decision = gate.decide(
        work=gate.WorkKind.BULK, images=max(needing, 1), account=account, model=row.model
    )
    estimate = None
    if decision.uses_ai:
        estimate = costs.estimate(
            account=account, images_needing_paid_call=needing, model=row.model
        )
    return BulkPreview(
        images=images,
        busy=busy,
        needing_call=needing,
        decision=decision,
        estimate=estimate,
        bounds=(lo, hi),
    )


# -- confirming --------------------------------------------------------------------------


def confirm(
    *,
    job: RegenerationJob,
    options: BulkOptions,
    actor,
    on_shortfall: Shortfall = PARTIAL,
    try_first: int | None = None,
) -> Confirmation:
    """Materialise the draft's items and queue it, or say why not.

    - Images busy in another job are left out and counted (the database constraint
      decides, so two confirmations racing for an image give it to one job).
    - Newest uploads first: when credits run out, the runner pauses by itself after
      what they allowed (``on_shortfall="partial"``); ``"dont_start"`` cancels instead.
    - ``try_first``: a trial: only that many images, spread over the selection (not the
      first by id), in review mode; ``run_remaining`` then drafts the rest.
    - A job that is no longer a draft was confirmed before: nothing changes, and the
      answer names it (``already_confirmed``).
    - The items are added after the draft -> preparing move commits, in chunks of short
      transactions (jobs.add_items); above creation.prepare_in_task_above() images, by a task
      (``preparing``: the job page counts them as they come), so the request returns.

    The same number of queries at ten images or ten thousand (one more per chunk).
    """
    current = RegenerationJob.objects.filter(pk=job.pk).first()
    if current is None or current.state != JobState.DRAFT:
        return _already_confirmed(job)
    # Reads, outside any transaction: the one aggregate over the scope holds no lock.
    look = preview(job=current, options=options)
    stored = options.as_dict()
    wanted = _wanted(current, options)
    if try_first and look.needing_call > try_first:
        stored.update(review=True, trial=int(try_first))
        wanted = spread(wanted, count=try_first, out_of=look.needing_call)
    elif look.needing_call > creation.prepare_in_task_above():
        stored["expected_items"] = look.needing_call
    with transaction.atomic():
        try:
            if look.refused:
                jobs.cancel(current)
                return Confirmation(
                    job=current, started=False, message=f"Not started: {look.refused}"
                )
            if not look.enough and on_shortfall == DONT_START:
                jobs.cancel(current)
                return Confirmation(
                    job=current,
                    started=False,
                    message=f"Not started, as you chose: {look.estimate.summary}",
                )
            # Conditional on the draft state: of two clicks, one moves it.
            jobs.begin_preparing(current)
        except jobs.IllegalTransition:
            return _already_confirmed(job)
        jobs.set_options(job=current, options=stored, created_by=actor)
        if "expected_items" in stored:
            # Too many for a request: a task adds the items (the job page shows how many).
            jobs.prepare_later(current)
            return Confirmation(
                job=current,
                started=True,
                preparing=True,
                items=look.needing_call,
                busy_count=look.busy,
                nothing_to_do=look.nothing_to_do,
            )
    # Outside the transaction: each chunk of items is its own short one.
    added = jobs.add_items(job=current, assets=wanted, bounds=look.bounds)
    if not _finish_preparing(current, added=added):
        return Confirmation(
            job=current,
            started=False,
            busy_count=look.busy,
            nothing_to_do=look.nothing_to_do,
            message=_nothing_message(look),
        )
    return Confirmation(
        job=current,
        started=True,
        items=added,
        # The insert has the last word: an image another job took since the count is busy.
        busy_count=look.busy + max(look.needing_call - added, 0),
        nothing_to_do=look.nothing_to_do,
    )


def _already_confirmed(job: RegenerationJob) -> Confirmation:
    job.refresh_from_db()
    return Confirmation(
        job=job,
        started=False,
        already_confirmed=True,
        message=f"Job #{job.pk} was already confirmed ({job.get_state_display()}).",
    )


def _wanted(job: RegenerationJob, options: BulkOptions) -> QuerySet[MediaAsset]:
    """The images of the scope needing a call, newest uploads first (claims take items by
    id, so when credits run out the newest were done)."""
    return scope_queryset(job).filter(needs_call(options)).order_by("-created_at", "-pk")


def prepare(*, job_id: int) -> None:
    """A large confirmed job's items, added in chunks by a task, then the job queued.

    Idempotent: a second delivery finds the job queued (nothing to do), or adds nothing
    the first added (the constraint refuses an image twice) and queues it.
    """
    job = RegenerationJob.objects.filter(pk=job_id, state=JobState.PREPARING).first()
    if job is None:
        return
    try:
        wanted = _wanted(job, BulkOptions.from_dict(job.options))
    except ScopeError as error:
        jobs.fail(job, reason=str(error))
        return
    jobs.add_items(job=job, assets=wanted)
    # The job row's count: a second delivery counts what the first added too.
    job.refresh_from_db(fields=["items_total"])
    _finish_preparing(job, added=job.items_total)


def _finish_preparing(job: RegenerationJob, *, added: int) -> bool:
    """Queue a prepared job, or cancel it when it got no item; False when it did not start
    (nothing added, or cancelled meanwhile)."""
    try:
        if not added:
            jobs.cancel(job)
            return False
        jobs.enqueue(job)
    except jobs.IllegalTransition:
        job.refresh_from_db()
        return False
    return True


def spread(assets: QuerySet[MediaAsset], *, count: int, out_of: int) -> QuerySet[MediaAsset]:
    """``count`` of ``assets`` spread evenly over them (every k-th in id order), so a trial
    sees the library's variety rather than its newest uploads."""
    step = max(out_of // count, 1)
    numbered = assets.annotate(position=Window(RowNumber(), order_by=F("pk").asc()))
    chosen = numbered.annotate(offset=Mod(F("position") - 1, step)).filter(offset=0)
    return MediaAsset.objects.filter(pk__in=chosen.values("pk")[:count]).order_by("pk")


def run_remaining(*, trial: RegenerationJob, actor) -> RegenerationJob:
    """A draft over the trial's scope without the images the trial worked, for the
    confirmation page (same options preselected, and the estimate for the rest)."""
    if not (trial.options or {}).get("trial"):
        raise ScopeError(f"Job #{trial.pk} was not a trial.")
    scope = {**{k: v for k, v in (trial.scope or {}).items() if k != "after_trial"}}
    scope["after_trial"] = trial.pk
    return jobs.create_draft(
        kind=JobKind.BULK,
        scope=scope,
        created_by=actor,
        options={k: v for k, v in (trial.options or {}).items() if k not in {"trial", "review"}},
    )


@dataclass(frozen=True)
class Trial:
    """A "try first" job as its review screen shows it: how it went, what is left."""

    job: RegenerationJob
    finished: bool
    remaining: int  # images of the selection the trial did not work that need a call


def trial_of(job_id: int | None) -> Trial | None:
    """The trial with this id, if it is one (two queries)."""
    if job_id is None:
        return None
    job = RegenerationJob.objects.filter(pk=job_id, kind=JobKind.BULK).first()
    if job is None or not (job.options or {}).get("trial"):
        return None
    options = BulkOptions.from_dict(job.options)
    rest = (
        _selection(job, job.scope or {})
        .exclude(pk__in=JobItem.objects.filter(job_id=job.pk).values("asset_id"))
        .filter(needs_call(options))
        .count()
    )
    return Trial(job=job, finished=job.state in FINAL_JOB_STATES, remaining=rest)


def try_again(*, trial: RegenerationJob, actor) -> RegenerationJob:
    """A new draft over the same selection as the trial, to change the settings."""
    scope = {k: v for k, v in (trial.scope or {}).items() if k != "after_trial"}
    return jobs.create_draft(kind=JobKind.BULK, scope=scope, created_by=actor)


def _nothing_message(look: BulkPreview) -> str:
    if look.images == 0:
        return "Not started: no image matches this selection any more."
    if look.busy and not look.needing_call:
        return (
            f"Not started: {look.busy:,} of the images are already being worked on by "
            "another job, and the others have nothing to fill."
        )
    return "Not started: these images have nothing to fill with the chosen fields and strategy."
