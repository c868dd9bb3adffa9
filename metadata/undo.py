"""Undo a whole job: what it would do (a preview, a dry run), and the ``undo`` job doing it.

An undo job gives every image the job changed its values from before the job, field by
field through revisions.undo_assets: a field changed again after the job is kept and listed
(a conflict) unless the person chose to override. It is a job like any other (progress,
pause, cancel, recover), on the interactive queue when small, and its own revisions can be
undone in turn. It never calls a provider and never costs credits.

Previews cost the same few queries whatever the job's size: counts in SQL, field-by-field
detail for a sample of the images changed since. The dry run of ``undo_job`` streams the
detail of every image instead (revisions.undo_plans).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import QuerySet

from mediaopt.library.models import MediaAsset
from metadata import jobs, undo_plan
from metadata.models import (
    FINAL_JOB_STATES,
    ItemState,
    JobItem,
    JobKind,
    JobQueue,
    MetadataRevision,
    RegenerationJob,
)

# Up to this many images an undo runs on the interactive queue: a click's worth of work.
INTERACTIVE_LIMIT = 50
# Images changed since the job whose conflicts a preview details.
SAMPLE = 50


class CannotUndo(Exception):
    """The job cannot be undone now; the message says why, for a person."""


def changed_assets(job: RegenerationJob) -> QuerySet:
    """The images ``job`` wrote a revision on."""
    return MediaAsset.objects.filter(
        pk__in=MetadataRevision.objects.filter(job=job).values("asset_id")
    )


def _undos(job: RegenerationJob) -> QuerySet:
    return RegenerationJob.objects.filter(undo_of=job, kind=JobKind.UNDO).order_by("-id")


def active_undo(job: RegenerationJob) -> RegenerationJob | None:
    """An undo of ``job`` that has not finished yet, if any."""
    return _undos(job).exclude(state__in=FINAL_JOB_STATES).first()


def latest_undo(job: RegenerationJob) -> RegenerationJob | None:
    """The newest undo of ``job``, finished or not (a confirmation page's guard against
    a second POST: in sync mode the first undo may already have finished)."""
    return _undos(job).first()


def refusal(job: RegenerationJob) -> str:
    """Why ``job`` cannot be undone now, or "" when it can."""
    if job.state not in FINAL_JOB_STATES:
        return (
            f"Job #{job.pk} is {job.get_state_display().lower()}; "
            "it can be undone once it has finished or been cancelled."
        )
    running = active_undo(job)
    if running is not None:
        return f"Job #{job.pk} is already being undone by job #{running.pk}."
    if not MetadataRevision.objects.filter(job=job).exists():
        return f"Job #{job.pk} changed no image; there is nothing to undo."
    return ""


@dataclass(frozen=True)
class Preview:
    """What undoing a job would do, for the confirmation page."""

    job: RegenerationJob
    images: int  # images the job changed
    unchanged_since: int  # still as the job left them: every field goes back
    busy: int  # held by another active job now: left out of the undo
    sample: list[undo_plan.UndoPlan] = field(default_factory=list)  # changed since, detailed

    @property
    def changed_since(self) -> int:
        return self.images - self.unchanged_since

    @property
    def interactive(self) -> bool:
        return self.images <= INTERACTIVE_LIMIT


def preview(job: RegenerationJob, *, sample: int = SAMPLE) -> Preview:
    """Counts in a few queries; conflicts detailed for up to ``sample`` images that were
    changed again after the job (the others get every field back)."""
    assets = changed_assets(job)
    images = assets.count()
    # Written as "current revision among the job's" (not a join on the revision's job):
    # both indexes then lead, and SQLite's planner stays linear.
    by_job = MetadataRevision.objects.filter(job=job).values("pk")
    unchanged = MediaAsset.objects.filter(current_revision__in=by_job).count()
    busy = JobItem.objects.active().filter(asset__in=assets).count()
    changed_since = list(
        assets.exclude(current_revision__in=by_job)
        .order_by("pk")
        .values_list("pk", flat=True)[:sample]
    )
    plans = list(undo_plan.undo_plans(job_id=job.pk, asset_ids=changed_since)) if sample else []
    return Preview(job=job, images=images, unchanged_since=unchanged, busy=busy, sample=plans)


@dataclass(frozen=True)
class UndoStart:
    job: RegenerationJob  # the undo job
    busy_count: int  # images left out: another job holds them


def start(
    *, job: RegenerationJob, actor=None, override: bool = False, queue_it: bool = True
) -> UndoStart:
    """Create and queue the ``undo`` job for ``job``. Raises CannotUndo with the reason.

    With ``queue_it`` False the undo job stays a draft, for runner.run_inline (a command's
    ``--inline``).

    One INSERT ... SELECT makes the items whatever the job's size. Images busy in another
    job are left out (and counted); undoing the job again later reaches them, since images
    already undone are skipped. Two confirmations at once make one undo: the second finds
    every image busy in the first.
    """
    reason = refusal(job)
    if reason:
        raise CannotUndo(reason)
    images = changed_assets(job)
    total = images.count()
    with transaction.atomic():
        undo = jobs.create_draft(
            kind=JobKind.UNDO,
            queue=JobQueue.INTERACTIVE if total <= INTERACTIVE_LIMIT else JobQueue.BULK,
            created_by=actor,
            scope={"undo_of": job.pk},
            options={"override": override},
            undo_of=job,
            account=job.account,
        )
        added = jobs.add_items(job=undo, assets=images.order_by("pk"))
        if not added:
            holder = active_undo(job)
            if holder is not None and holder.pk != undo.pk:
                reason = f"Job #{job.pk} is already being undone by job #{holder.pk}."
            else:
                reason = f"Every image job #{job.pk} changed is being worked on by another job."
            # Leaving the block by an exception rolls the empty draft back.
            raise CannotUndo(reason)
        if queue_it:
            jobs.enqueue(undo)
    return UndoStart(job=undo, busy_count=total - added)


@dataclass(frozen=True)
class UndoResult:
    """What an undo job did, for its page: counts and the images with kept fields."""

    restored: int
    kept: list[JobItem]  # items whose conflicting fields were kept (first few)
    kept_total: int


def result(undo_job: RegenerationJob, *, limit: int | None = SAMPLE) -> UndoResult:
    """Counts, and the first ``limit`` images with conflicts (all of them for None)."""
    items = JobItem.objects.filter(job=undo_job)
    restored = items.filter(state=ItemState.SUCCEEDED, revision__isnull=False).count()
    with_conflicts = items.exclude(conflicts=[]).select_related("asset").order_by("id")
    kept = list(with_conflicts if limit is None else with_conflicts[:limit])
    complete = limit is None or len(kept) < limit
    kept_total = len(kept) if complete else with_conflicts.count()
    return UndoResult(restored=restored, kept=kept, kept_total=kept_total)
