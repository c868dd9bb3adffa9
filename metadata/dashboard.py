"""The admin's home: where metadata comes from now, how much of the library has it, and the
jobs at work. A fixed handful of queries however large the library is: every count is one
aggregate, never a loop over images or jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Exists, OuterRef, Q
from django.urls import reverse

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import library_filters, review
from metadata.models import JobState, Proposal, RegenerationJob, Settings
from metadata.status import AIStatus, ai_status

RECENT_JOBS = 10
MOVING = frozenset({JobState.QUEUED, JobState.RUNNING})
# Heuristic alt text counts as missing (AI may still improve it): its label says so.
SOURCE_LABELS = {
    Source.AI: "alt text by AI",
    Source.EMBEDDED: "alt text embedded in the file",
    Source.MANUAL: "alt text written by hand",
    Source.HEURISTIC: "alt text guessed from the file (counted as missing)",
}


@dataclass(frozen=True)
class Figure:
    label: str
    count: int
    url: str


@dataclass(frozen=True)
class Coverage:
    images: int
    images_url: str
    by_source: list[Figure]
    missing: Figure
    needs_review: Figure
    other_language: Figure


def _library_url(**params: str) -> str:
    url = reverse("admin:mediaopt_mediaasset_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def coverage(*, language: str) -> Coverage:
    """The library's alt text in numbers, each linking to the library filtered to it."""
    waiting = Proposal.objects.pending().filter(asset=OuterRef("pk"))
    sources = list(SOURCE_LABELS)
    # The missing condition is the library's own (missing_alt_text), so the number and the
    # filtered list it links to cannot disagree.
    missing_q = Q(pk__in=MediaAsset.objects.missing_alt_text().values("pk"))
    totals = MediaAsset.objects.aggregate(
        images=Count("pk"),
        missing=Count("pk", filter=missing_q),
        needs_review=Count("pk", filter=Q(Exists(waiting))),
        **{
            f"source_{source.value}": Count(
                "pk", filter=Q(alt_text_source=source) & ~Q(alt_text="")
            )
            for source in sources
        },
    )
    other = MediaAsset.objects.filter(library_filters.other_language(language)).count()
    return Coverage(
        images=totals["images"],
        images_url=_library_url(),
        by_source=[
            Figure(
                label=SOURCE_LABELS[source],
                count=totals[f"source_{source.value}"],
                url=_library_url(alt_text_source=source.value),
            )
            for source in sources
        ],
        missing=Figure(
            label="missing alt text",
            count=totals["missing"],
            url=_library_url(alt_text_missing="yes"),
        ),
        needs_review=Figure(
            label="need review",
            count=totals["needs_review"],
            url=_library_url(needs_review="yes"),
        ),
        other_language=Figure(
            label="in another language than the settings",
            count=other,
            url=_library_url(ai_language="other"),
        ),
    )


def dashboard_context(
    *, user: AbstractBaseUser | AnonymousUser, may_run: bool, may_see_jobs: bool
) -> dict[str, Any]:
    """Everything the admin's index shows above the app list."""
    row = Settings.objects.current()
    status: AIStatus = ai_status(user=user)
    recent = (
        list(RegenerationJob.objects.recent_with_progress(limit=RECENT_JOBS))
        if may_see_jobs
        else []
    )
    waiting = review.waiting_count()
    return {
        "ai_status": status,
        "coverage": coverage(language=row.language),
        "settings_language": row.language,
        "recent_jobs": recent,
        "jobs_url": reverse("admin:metadata_settings_jobs"),
        "jobs_moving": any(job.state in MOVING for job in recent),
        "may_run": may_run,
        "may_see_jobs": may_see_jobs,
        "proposals_waiting": waiting,
        "review_url": reverse("admin:metadata_proposal_changelist"),
    }
