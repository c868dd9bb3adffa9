"""Reads of a job: counts per item state, the summary a page or the CLI shows, failures.

A few small queries whatever the number of items (the counts are on the job's row, see
metadata.counts): the job page polls these every second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import get_language_info

from mediaopt.library.fields import LABELS
from metadata import counts, items
from metadata.models import (
    FINAL_JOB_STATES,
    WORKED_ITEM_STATES,
    ItemState,
    JobItem,
    JobState,
    RegenerationJob,
    Strategy,
)

SKIP_REASONS_SHOWN = 10


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
    def worked(self) -> int:
        """Items a runner finished, whatever the outcome: what a cancelled job did."""
        return self.succeeded + self.skipped + self.failed

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


def progress(job: RegenerationJob) -> Progress:
    """Counts per item state from the job row (its counts, kept by metadata.counts) and
    its few claimed items, in one small query whatever the number of items."""
    row = (
        RegenerationJob.objects.filter(pk=job.pk)
        .annotate(claimed=counts.claimed_subquery())
        .values(
            "items_total",
            "items_succeeded",
            "items_skipped",
            "items_failed",
            "items_cancelled",
            "claimed",
        )
        .first()
    )
    if row is None:
        return Progress(**dict.fromkeys(ItemState.values, 0), total=0)
    done = row["items_succeeded"] + row["items_skipped"] + row["items_failed"]
    done += row["items_cancelled"]
    return Progress(
        total=row["items_total"],
        pending=max(row["items_total"] - done - row["claimed"], 0),
        claimed=row["claimed"],
        succeeded=row["items_succeeded"],
        skipped=row["items_skipped"],
        failed=row["items_failed"],
        cancelled=row["items_cancelled"],
    )


def recently_worked(job: RegenerationJob, *, since: datetime) -> int:
    """Items the job finished since ``since`` (the rate's window), in one query: a count
    per worked state, each a range on that state's jobitem_recent_* index, so only
    those items are read (an IN over the states made SQLite read every item of the job)."""
    per_state = {
        state.value: Coalesce(
            Subquery(
                JobItem.objects.filter(job=OuterRef("pk"), state=state, updated_at__gte=since)
                .order_by()
                .values("job")
                .annotate(n=Count("id"))
                .values("n")
            ),
            0,
        )
        for state in WORKED_ITEM_STATES
    }
    row = RegenerationJob.objects.filter(pk=job.pk).annotate(**per_state).values(*per_state)
    return sum((row.first() or {}).values())


# -- reading a job for a person ----------------------------------------------------------

# Images per minute count the items finished in this window (or since the runner last
# started, if later), so a pause or a slow first call does not drag the figure for ever.
RATE_WINDOW = timedelta(minutes=2)
# Below this much measured time the rate is noise (one fast item would say 600 a minute).
RATE_MIN_SECONDS = 5.0
FAILURES_SHOWN = 50


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
    def pruned(self) -> bool:
        """Retention deleted the job's items (metadata.pruning): the counts stay, the list
        of failures and the reasons for skips are gone."""
        return self.job.items_pruned_at is not None

    @property
    def failures_not_shown(self) -> int:
        return 0 if self.pruned else self.progress.failed - len(self.failures)


def failures(
    job: RegenerationJob, *, limit: int | None = FAILURES_SHOWN, offset: int = 0
) -> list[Failure]:
    """The job's failed items with their reasons, in item order (one query)."""
    rows = (
        JobItem.objects.filter(job_id=job.pk, state=ItemState.FAILED)
        .order_by("id")
        .values_list("id", "asset_id", "asset__original_name", "error")
    )
    if limit is not None:
        rows = rows[offset : offset + limit]
    return [
        Failure(item_id=item_id, asset_id=asset_id, name=name, reason=error)
        for item_id, asset_id, name, error in rows
    ]


def job_summary(
    job: RegenerationJob, *, now: datetime | None = None, failures_shown: int = FAILURES_SHOWN
) -> Summary:
    """The job as read by the caller, with its items and ledger summed up.

    A few small queries (the job row's counts, its claimed items, the items finished in
    the rate's window, ledger sums, the first failures), whether the job has ten items or
    a million: the page polls this every second.
    """
    from billing.models import EntryKind, LedgerEntry, Unit

    now = now or timezone.now()
    window_start = now - RATE_WINDOW
    if job.started_at is not None and job.started_at > window_start:
        window_start = job.started_at
    counted = progress(job)
    recent = recently_worked(job, since=window_start) if job.state == JobState.RUNNING else 0
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
        failures=(
            failures(job, limit=failures_shown)
            if counted.failed and job.items_pruned_at is None
            else []
        ),
    )


def skips_by_reason(
    *, job: RegenerationJob, limit: int = SKIP_REASONS_SHOWN
) -> list[tuple[str, int]]:
    """Why the job's images were skipped, the commonest reasons first: one GROUP BY."""
    rows = (
        JobItem.objects.filter(job=job, state=ItemState.SKIPPED)
        .order_by()
        .values("error")
        .annotate(n=Count("id"))
        .order_by("-n", "error")[:limit]
    )
    return [(row["error"] or "no reason recorded", row["n"]) for row in rows]


def _language_name(code: str) -> str:
    try:
        return f"{get_language_info(code)['name']} ({code})"
    except KeyError:
        return code


def describe_options(*, options: dict) -> str:
    """A job's options in words, e.g. "Fill empty fields only; alt text, title; German (de)"."""
    strategy = options.get("strategy", Strategy.FILL_EMPTY)
    parts = [Strategy(strategy).label if strategy in Strategy.values else strategy]
    if options.get("force"):
        parts.append("also fields edited by hand")
    fields = [LABELS.get(name, name) for name in options.get("fields", [])]
    if fields:
        parts.append(", ".join([fields[0], *(label.lower() for label in fields[1:])]))
    if options.get("language"):
        parts.append(_language_name(options["language"]))
    if options.get("focus_keywords"):
        parts.append(f"focus keywords: {options['focus_keywords']}")
    if options.get("review"):
        parts.append("every result waits for review")
    return "; ".join(parts)


def fallbacks_by_reason(
    *, job: RegenerationJob, limit: int = SKIP_REASONS_SHOWN
) -> list[tuple[str, int]]:
    """Why the heuristic wrote images of the job instead of AI, the commonest reasons
    first (the notes ``items.finish_item`` keeps): one GROUP BY."""
    rows = (
        JobItem.objects.filter(
            job=job, state=ItemState.SUCCEEDED, error__startswith=items.FALLBACK_NOTE
        )
        .order_by()
        .values("error")
        .annotate(n=Count("id"))
        .order_by("-n", "error")[:limit]
    )
    # The reasons are sentences; the page lists them as "reason: count".
    return [(row["error"].removeprefix(items.FALLBACK_NOTE).rstrip("."), row["n"]) for row in rows]
