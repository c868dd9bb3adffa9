"""The media library's admin as registered: the library's own (list, image page, upload)
composed with the metadata app's features, each a mixin of its own module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.http import (
    HttpRequest,
)
from django.urls import URLPattern
from django.utils.html import format_html, format_html_join

from mediaopt.library import ingest
from mediaopt.library.admin import LibraryAdmin
from mediaopt.library.fields import (
    FIELDS,
    source_field,
)
from mediaopt.library.models import MediaAsset
from metadata import intake, library_filters
from metadata.admin.bulk import BulkActionMixin
from metadata.admin.change_form import MetadataChangeFormMixin
from metadata.admin.common import (
    RECENT_JOBS,
    job_link,
    may_run,
)
from metadata.admin.history import HistoryMixin
from metadata.admin.regenerate import RegenerateMixin
from metadata.models import (
    JobItem,
    MetadataRevision,
    Proposal,
    RegenerationJob,
    Settings,
)


class HasRevisionsFilter(admin.SimpleListFilter):
    title = "has revisions"
    parameter_name = "revised"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> Sequence[tuple[str, str]]:
        return (("yes", "Changed since import"), ("no", "Only the import"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() in {"yes", "no"}:
            return library_filters.revised(queryset, since_import=self.value() == "yes")
        return queryset


class ChangedByJobFilter(admin.SimpleListFilter):
    """Images a job wrote a revision on. Offers the newest jobs that wrote any; any job
    number typed into the URL (``?job=N``) works too, older ones included."""

    title = "changed by job"
    parameter_name = "job"

    def job_id(self) -> int | None:
        """The job number from the URL; None for anything but an integer (ignored)."""
        return library_filters.job_number(self.value() or "")

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> Sequence[tuple[str, str]]:
        # One query, whatever the number of jobs or images.
        recent = (
            RegenerationJob.objects.filter(
                Exists(MetadataRevision.objects.filter(job=OuterRef("pk")))
            )
            .only("pk", "kind")
            .order_by("-created_at", "-id")[:RECENT_JOBS]
        )
        choices = [(str(job.pk), f"#{job.pk} {job.get_kind_display().lower()}") for job in recent]
        chosen = self.job_id()
        if chosen is not None and str(chosen) not in {value for value, _ in choices}:
            # A job from the URL that is not among the newest still shows as chosen.
            choices.append((str(chosen), f"#{chosen}"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        job_id = self.job_id()
        if job_id is None:
            return queryset
        return library_filters.changed_by_job(queryset, job_id=job_id)


class NeedsReviewFilter(admin.SimpleListFilter):
    """Images with a proposal waiting on the review screen."""

    title = "review"
    parameter_name = "needs_review"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> Sequence[tuple[str, str]]:
        return (("yes", "Needs review"), ("no", "Nothing waiting"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() in {"yes", "no"}:
            return library_filters.needs_review(queryset, waiting=self.value() == "yes")
        return queryset


class OtherLanguageFilter(admin.SimpleListFilter):
    """AI text asked in another language than the settings' (after the setting changed)."""

    title = "AI text language"
    parameter_name = "ai_language"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> Sequence[tuple[str, str]]:
        # Not named here: a query for the settings on every list view costs more than the
        # name tells (the settings page names it).
        return (("other", "Not in the settings' language"),)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "other":
            return library_filters.in_other_language(
                queryset, language=Settings.objects.current().language
            )
        return queryset


# What belongs to an image alone and is deleted with it (see get_deleted_objects).
IMAGE_HISTORY = (MetadataRevision, Proposal, JobItem)


@admin.register(MediaAsset)
class MediaAssetAdmin(
    BulkActionMixin, RegenerateMixin, HistoryMixin, MetadataChangeFormMixin, LibraryAdmin
):
    list_filter = (
        *LibraryAdmin.list_filter,
        HasRevisionsFilter,
        ChangedByJobFilter,
        NeedsReviewFilter,
        OtherLanguageFilter,
    )
    readonly_fields = (*LibraryAdmin.readonly_fields, "revision_display", "checks_display")
    fieldsets = (
        (None, {"fields": ("preview_display",)}),
        (
            "Metadata",
            {
                # Each field with its source beside it, so a person sees which values
                # were generated, embedded, guessed or typed by hand.
                "fields": (
                    *((name, source_field(name)) for name in FIELDS),
                    "is_decorative",
                    "checks_display",
                    "based_on_revision",
                )
            },
        ),
        (
            "File",
            {
                "fields": (
                    "original_name",
                    ("format", "dimensions_display", "bytes_display"),
                    "sha256_display",
                    ("revision_display", "created_at"),
                )
            },
        ),
    )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """The delete confirmation (one image or the action) says first which job holds
        any of them: deleting an image a job is working on cancels its item."""
        ids = [obj.pk for obj in objs] if isinstance(objs, list) else objs.values("pk")
        busy = (
            JobItem.objects.active()
            .filter(asset_id__in=ids)
            .values("job_id")
            .annotate(images=Count("pk"))
            .order_by("job_id")
        )
        for row in busy:
            count = row["images"]
            self.message_user(
                request,
                format_html(
                    "{} of these images {} being worked on by {}: deleting {} cancels "
                    "{} part in that job.",
                    count,
                    "is" if count == 1 else "are",
                    job_link(RegenerationJob(pk=row["job_id"])),
                    "it" if count == 1 else "them",
                    "its" if count == 1 else "their",
                ),
                messages.WARNING,
            )
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # An image's history goes with it. Revisions and proposals are read-only in their
        # own admin pages (nobody deletes one alone), which Django's cascade check would
        # read as "no permission": no image that has metadata could be deleted at all.
        history = {model._meta.verbose_name for model in IMAGE_HISTORY}
        return deleted, counts, perms_needed - history, protected

    def get_urls(self) -> list[URLPattern]:
        # Before super()'s: its "<path:object_id>/" would swallow "5/regenerate/".
        return [
            *self.upload_urls(),
            *self.bulk_urls(),
            *self.regenerate_urls(),
            *self.history_urls(),
            *super(LibraryAdmin, self).get_urls(),
        ]

    def import_uploads(self, request: HttpRequest, files: list) -> None:
        """Import the files now (fast); their metadata is written by one upload job."""
        outcomes = [
            intake.import_file(source=upload, original_name=upload.name, actor=request.user)
            for upload in files
        ]
        imported = [o.asset for o in outcomes if o.status == ingest.IMPORTED and o.asset]
        asset_ids = [asset.pk for asset in imported]
        job, without_ai = None, None
        if may_run(request):
            job = intake.start_upload_job(asset_ids=asset_ids, created_by=request.user)
        else:
            without_ai = intake.write_heuristic_metadata(asset_ids=asset_ids, actor=request.user)
        summary, level = upload_summary(
            outcomes, job_id=job.pk if job else None, without_ai=without_ai
        )
        self.message_user(request, summary, level)


def upload_summary(
    outcomes: Sequence[ingest.ImportOutcome],
    *,
    job_id: int | None = None,
    without_ai: int | None = None,
) -> tuple[str, int]:
    """One line for the whole batch, e.g. "2 images uploaded; their metadata is being
    written — job #7; 1 duplicate skipped (...)", the job's number a link to its page.

    Names are the user's own file names: escaped here, since the line is safe HTML.
    """
    imported = [o for o in outcomes if o.status == ingest.IMPORTED]
    duplicates = [o for o in outcomes if o.status == ingest.DUPLICATE]
    rejected = [o for o in outcomes if o.status == ingest.REJECTED]
    parts = [f"{len(imported)} image{'' if len(imported) == 1 else 's'} uploaded"]
    if job_id is not None:
        whose = "its" if len(imported) == 1 else "their"
        job = job_link(RegenerationJob(pk=job_id))
        parts.append(format_html("{} metadata is being written — {}", whose, job))
    if without_ai is not None:
        # The uploader lacks metadata.run_regeneration: say why there is no AI, and what
        # came instead (``without_ai`` images got values from the heuristic).
        parts.append(
            "no AI metadata, because your account may not start regeneration jobs: "
            f"{without_ai} of {len(imported)} got metadata from text embedded in the file "
            "or a telling file name"
        )
    if duplicates:
        names = "; ".join(
            f"{o.original_name} is already in the library as {o.asset.original_name}"
            if o.asset
            else o.original_name
            for o in duplicates
        )
        noun = "duplicate" if len(duplicates) == 1 else "duplicates"
        parts.append(f"{len(duplicates)} {noun} skipped ({names})")
    if rejected:
        details = "; ".join(f"{o.original_name} — {o.reason}" for o in rejected)
        parts.append(f"{len(rejected)} rejected: {details}")
    if rejected:
        level = messages.WARNING if imported or duplicates else messages.ERROR
    else:
        level = messages.SUCCESS if imported else messages.INFO
    return format_html_join("; ", "{}", ((part,) for part in parts)), level
