"""The media library in the admin: thumbnails, filters, multi-file upload, the change form.

The admin is a thin shell: ingest.py brings files in, an upload job writes their metadata
(intake.py, on the interactive cluster), the Regenerate button starts a single job
(single.py), and revisions.py is the only writer of an asset's metadata, so `save_model`
never saves the asset itself. A job panel on the change page follows the image's active
job over HTMX and swaps the new values in when it ends. The metadata history page lists
an image's revisions, compares two and restores one (revisions.restore); what it shows is
worked out in metadata/history.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, QuerySet
from django.forms.utils import ErrorList
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from mediaopt import images, ingest
from mediaopt.models import MediaAsset
from metadata import bulk, history, intake, revisions, single
from metadata.forms import BulkOptionsForm
from metadata.models import (
    ACTIVE_ITEM_STATES,
    ItemState,
    JobItem,
    JobKind,
    JobState,
    MetadataRevision,
    RegenerationJob,
    Settings,
)
from metadata.schema import FIELDS, LABELS, Source, source_field

# The fields a person may edit; everything else on the page is a file fact.
EDITABLE_FIELDS: tuple[str, ...] = (*FIELDS, "is_decorative")


def stale_message(number: int | None) -> str:
    current = f"revision {number}" if number is not None else "a newer revision"
    return (
        f"This image's metadata changed since you opened it ({current}). "
        "Reload to see the new values; your changes were not saved."
    )


class MediaAssetForm(forms.ModelForm):
    # The revision the person saw when the form was rendered. A save is refused when the
    # asset has moved on meanwhile (a job, another tab, another person), so nobody
    # silently overwrites values they never saw.
    based_on_revision = forms.IntegerField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = MediaAsset
        fields = list(EDITABLE_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "based_on_revision" in self.fields and self.instance.pk:
            self.fields["based_on_revision"].initial = self.instance.current_revision_id

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.instance.pk and "based_on_revision" in self.fields:
            # Read afresh: the instance was loaded at the start of this request, but a
            # job may have written between then and now.
            current_id = (
                MediaAsset.objects.filter(pk=self.instance.pk)
                .values_list("current_revision_id", flat=True)
                .first()
            )
            if cleaned.get("based_on_revision") != current_id:
                raise forms.ValidationError(
                    stale_message(revision_number(current_id)), code="stale_revision"
                )
        return cleaned


def revision_number(revision_id: int | None) -> int | None:
    if revision_id is None:
        return None
    return MetadataRevision.objects.filter(pk=revision_id).values_list("number", flat=True).first()


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Many files in one input (Django docs, "Uploading multiple files").

    Each file is only collected here: ingest.import_file judges it and says why it
    refuses one, so a single bad file does not reject the whole batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = [item for item in (data if isinstance(data, (list, tuple)) else [data]) if item]
        if not files and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return files


class UploadForm(forms.Form):
    files = MultipleFileField(label="Images")


class MissingAltTextFilter(admin.SimpleListFilter):
    title = "alt text"
    parameter_name = "alt_text_missing"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> Sequence[tuple[str, str]]:
        return (("yes", "Missing alt text"), ("no", "Has alt text or is decorative"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "yes":
            return queryset.missing_alt_text()
        if self.value() == "no":
            # The complement is defined by the same queryset method, so the two choices
            # can never disagree about what "missing" means.
            return queryset.exclude(pk__in=MediaAsset.objects.missing_alt_text().values("pk"))
        return queryset


class HasRevisionsFilter(admin.SimpleListFilter):
    title = "has revisions"
    parameter_name = "revised"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> Sequence[tuple[str, str]]:
        return (("yes", "Changed since import"), ("no", "Only the import"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        # Revision 1 is the import and each change adds one to the current number.
        if self.value() == "yes":
            return queryset.filter(current_revision__number__gt=1)
        if self.value() == "no":
            return queryset.filter(current_revision__number=1)
        return queryset


# The largest id a database column holds: a bigger number in the URL names no job.
MAX_ID = 2**63 - 1
RECENT_JOBS = 10


class ChangedByJobFilter(admin.SimpleListFilter):
    """Images a job wrote a revision on. Offers the newest jobs that wrote any; any job
    number typed into the URL (``?job=N``) works too, older ones included."""

    title = "changed by job"
    parameter_name = "job"

    def job_id(self) -> int | None:
        """The job number from the URL; None for anything but an integer (ignored)."""
        value = self.value() or ""
        return int(value) if re.fullmatch(r"-?[0-9]+", value) else None

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
        if not 0 < job_id <= MAX_ID:
            return queryset.none()
        return queryset.filter(
            Exists(MetadataRevision.objects.filter(asset=OuterRef("pk"), job_id=job_id))
        )


class RevisionInline(admin.TabularInline):
    """The asset's history, newest first. Read-only: revisions are append-only."""

    model = MetadataRevision
    # The tabular inline, then a link to the full history (compare, restore).
    template = "admin/mediaopt/mediaasset/history_inline.html"
    fk_name = "asset"
    verbose_name = "revision"
    verbose_name_plural = "history"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-number",)
    fields = readonly_fields = (
        "number",
        "kind",
        "changed_fields_display",
        "alt_text",
        "alt_text_source",
        "provider",
        "model",
        "actor",
        "created_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("actor")

    @admin.display(description="changed")
    def changed_fields_display(self, revision: MetadataRevision) -> str:
        return ", ".join(revision.changed_fields) or "—"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.site_header = "mediaopt"
admin.site.site_title = "mediaopt"
admin.site.index_title = "Image library and metadata"


@admin.register(MediaAsset)
class MediaAssetAdmin(admin.ModelAdmin):
    form = MediaAssetForm
    inlines = [RevisionInline]
    list_display = (
        "thumbnail_display",
        "original_name",
        "alt_text_display",
        "alt_text_source",
        "is_decorative",
        "size_display",
        "created_at",
    )
    list_display_links = ("thumbnail_display", "original_name")
    list_filter = (
        MissingAltTextFilter,
        "alt_text_source",
        "is_decorative",
        HasRevisionsFilter,
        ChangedByJobFilter,
    )
    search_fields = ("original_name", "alt_text", "title", "caption", "keywords")
    # A COUNT(*) over a large library on every page view costs more than it tells.
    show_full_result_count = False
    readonly_fields = (
        "preview_display",
        "original_name",
        "format",
        "dimensions_display",
        "bytes_display",
        "sha256_display",
        "revision_display",
        "created_at",
        *(source_field(name) for name in FIELDS),
    )
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
    change_list_template = "admin/mediaopt/mediaasset/change_list.html"
    upload_template = "admin/mediaopt/mediaasset/upload.html"
    bulk_template = "admin/mediaopt/mediaasset/regenerate_bulk.html"
    actions = ["regenerate_with_ai"]

    # --- list ---------------------------------------------------------------------------

    @admin.display(description="image")
    def thumbnail_display(self, asset: MediaAsset) -> str:
        image = asset.thumbnail or asset.file
        if not image:
            return "—"
        # Alt text may come from a model: format_html escapes it into a quoted attribute.
        return format_html(
            '<img src="{}" alt="{}" loading="lazy" class="mediaopt-thumb">',
            image.url,
            asset.alt_text,
        )

    @admin.display(description="alt text", ordering="alt_text")
    def alt_text_display(self, asset: MediaAsset) -> str | None:
        if asset.is_decorative and not asset.alt_text:
            return "(decorative)"
        return Truncator(asset.alt_text).chars(80) or None

    @admin.display(description="size", ordering="bytes")
    def size_display(self, asset: MediaAsset) -> str:
        return f"{asset.width}×{asset.height}, {filesizeformat(asset.bytes)}"

    # --- change form --------------------------------------------------------------------

    @admin.display(description="preview")
    def preview_display(self, asset: MediaAsset) -> str:
        if not asset.pk or not asset.file:
            return "—"
        return format_html(
            '<img src="{}" alt="{}" class="mediaopt-preview">', asset.file.url, asset.alt_text
        )

    @admin.display(description="dimensions")
    def dimensions_display(self, asset: MediaAsset) -> str:
        return f"{asset.width} × {asset.height} px"

    @admin.display(description="size")
    def bytes_display(self, asset: MediaAsset) -> str:
        if asset.bytes < 1024:
            return filesizeformat(asset.bytes)
        return f"{filesizeformat(asset.bytes)} ({asset.bytes:,} bytes)"

    @admin.display(description="SHA-256")
    def sha256_display(self, asset: MediaAsset) -> str:
        return asset.sha256

    @admin.display(description="current revision")
    def revision_display(self, asset: MediaAsset) -> str:
        revision = asset.current_revision
        if revision is None:
            return "—"
        return f"{revision.number} ({revision.get_kind_display()})"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        # Images are added only by uploading files, never from a blank form.
        extra_context = {**(extra_context or {}), "show_save_and_add_another": False}
        asset_id = _asset_id(object_id)
        if asset_id is not None:
            item = JobItem.objects.active_for_asset(asset_id).select_related("job").first()
            extra_context["panel"] = self.panel_context(request, asset_id, item=item)
            may_regenerate = self.has_run_regeneration_permission(request)
            if may_regenerate and self.has_change_permission(request):
                extra_context["regenerate_url"] = self.asset_url("regenerate", asset_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def get_fieldsets(self, request: HttpRequest, obj: MediaAsset | None = None) -> Any:
        if obj is not None and self.has_change_permission(request, obj):
            return self.fieldsets
        # A view-only page posts nothing, so it carries no stale-revision guard (and the
        # admin would try to show the hidden field as a read-only row).
        return tuple(
            (
                name,
                {
                    **options,
                    "fields": tuple(f for f in options["fields"] if f != "based_on_revision"),
                },
            )
            for name, options in self.fieldsets
        )

    def save_model(
        self, request: HttpRequest, obj: MediaAsset, form: forms.ModelForm, change: bool
    ) -> None:
        changed = [name for name in form.changed_data if name in EDITABLE_FIELDS]
        obj._mediaopt_stale = None  # type: ignore[attr-defined]
        if not changed:
            return
        try:
            revisions.apply_manual(
                asset=obj,
                values={name: form.cleaned_data[name] for name in FIELDS},
                is_decorative=form.cleaned_data["is_decorative"],
                changed_fields=changed,
                actor=request.user,
                based_on_revision_id=form.cleaned_data.get("based_on_revision"),
            )
        except revisions.StaleRevision as error:
            # A job wrote between form.clean() and here: the form check cannot close
            # that window, the conditional write in revisions.py does.
            obj.refresh_from_db()
            obj._mediaopt_stale = error  # type: ignore[attr-defined]
            self.message_user(
                request,
                stale_message(revision_number(obj.current_revision_id)),
                messages.ERROR,
            )

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool
    ) -> None:
        # The only inline is the read-only history: write nothing, but leave the lists the
        # admin's change message reads.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def log_change(self, request: HttpRequest, obj: MediaAsset, message: Any) -> Any:
        if getattr(obj, "_mediaopt_stale", None) is not None:
            return None
        return super().log_change(request, obj, message)

    def response_change(self, request: HttpRequest, obj: MediaAsset) -> HttpResponse:
        if getattr(obj, "_mediaopt_stale", None) is not None:
            # Back to the form, which now shows the newer values; no success message.
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    # --- upload -------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        # Before super()'s: its "<path:object_id>/" would swallow "5/regenerate/".
        return [
            path(
                "upload/",
                self.admin_site.admin_view(self.upload_view),
                name="{}_{}_upload".format(*info),
            ),
            path(
                "regenerate-bulk/<int:job_id>/",
                self.admin_site.admin_view(self.regenerate_bulk_view),
                name="{}_{}_regenerate_bulk".format(*info),
            ),
            path(
                "regenerate-all/",
                self.admin_site.admin_view(self.regenerate_all_view),
                name="{}_{}_regenerate_all".format(*info),
            ),
            path(
                "<path:object_id>/regenerate/",
                self.admin_site.admin_view(self.regenerate_view),
                name="{}_{}_regenerate".format(*info),
            ),
            path(
                "<path:object_id>/metadata-history/",
                self.admin_site.admin_view(self.metadata_history_view),
                name="{}_{}_metadata_history".format(*info),
            ),
            path(
                "<path:object_id>/metadata-history/compare/",
                self.admin_site.admin_view(self.metadata_compare_view),
                name="{}_{}_metadata_compare".format(*info),
            ),
            path(
                "<path:object_id>/metadata-history/<int:revision_id>/restore/",
                self.admin_site.admin_view(self.metadata_restore_view),
                name="{}_{}_metadata_restore".format(*info),
            ),
            path(
                "<path:object_id>/job-panel/",
                self.admin_site.admin_view(self.job_panel_view),
                name="{}_{}_job_panel".format(*info),
            ),
            *super().get_urls(),
        ]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        # Assets come only from files: the admin's "Add" leads to the upload page.
        return HttpResponseRedirect(self.upload_url())

    def upload_url(self) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_upload"
        )

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = UploadForm(request.POST, request.FILES)
            if form.is_valid():
                self.import_uploads(request, form.cleaned_data["files"])
                return HttpResponseRedirect(
                    reverse(
                        f"{self.admin_site.name}:{self.opts.app_label}_"
                        f"{self.opts.model_name}_changelist"
                    )
                )
        else:
            form = UploadForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": "Upload images",
            "form": form,
            "errors": form.errors.get("files", ErrorList()),
            "has_view_permission": self.has_view_permission(request),
            "max_upload_bytes": settings.MEDIAOPT_MAX_UPLOAD_BYTES,
            "formats": ", ".join(images.ALLOWED_FORMATS),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.upload_template, context)

    def import_uploads(self, request: HttpRequest, files: list) -> None:
        """Import the files now (fast); their metadata is written by one upload job."""
        outcomes = [
            ingest.import_file(source=upload, original_name=upload.name, actor=request.user)
            for upload in files
        ]
        imported = [o.asset for o in outcomes if o.status == ingest.IMPORTED and o.asset]
        asset_ids = [asset.pk for asset in imported]
        job, without_ai = None, None
        if self.has_run_regeneration_permission(request):
            job = intake.start_upload_job(asset_ids=asset_ids, created_by=request.user)
        else:
            without_ai = intake.write_heuristic_metadata(asset_ids=asset_ids, actor=request.user)
        summary, level = upload_summary(
            outcomes, job_id=job.pk if job else None, without_ai=without_ai
        )
        self.message_user(request, summary, level)

    # --- bulk regeneration ----------------------------------------------------------------
    # A sibling of Django's delete_selected: a permission-gated action, a confirmation
    # page, a message, back to the changelist. But the selection stays server-side as a
    # draft job (bulk.py) and the page posts only the draft's id and the options.

    def has_run_regeneration_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("metadata.run_regeneration")

    @admin.action(permissions=["run_regeneration"], description="Regenerate metadata with AI")
    def regenerate_with_ai(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        if request.POST.get("select_across") == "1":
            # Every page: keep the changelist's filter, not thousands of ids.
            job = bulk.draft_bulk(actor=request.user, filter_params=dict(request.GET.lists()))
        else:
            job = bulk.draft_bulk(
                actor=request.user, asset_ids=list(queryset.values_list("pk", flat=True))
            )
        return HttpResponseRedirect(self.bulk_url(job.pk))

    def bulk_url(self, job_id: int) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_regenerate_bulk",
            args=[job_id],
        )

    def changelist_url(self) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist"
        )

    def regenerate_all_view(self, request: HttpRequest) -> HttpResponse:
        """POST from the settings page: a draft over every image, or those missing alt text."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_regeneration_permission(request):
            raise PermissionDenied
        scope = request.POST.get("scope", bulk.ALL)
        if scope not in bulk.NAMED_SCOPES:
            raise Http404("No such scope.")
        job = bulk.draft_bulk(
            actor=request.user, missing_alt_text_only=scope == bulk.MISSING_ALT_TEXT
        )
        return HttpResponseRedirect(self.bulk_url(job.pk))

    def regenerate_bulk_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """GET: the confirmation page for a draft. POST "_preview": the same page with the
        chosen options; POST "_confirm" or "_try_first": bulk.confirm, then the changelist."""
        if not self.has_run_regeneration_permission(request):
            raise PermissionDenied
        job = RegenerationJob.objects.filter(pk=job_id, kind=JobKind.BULK).first()
        if job is None or (job.created_by_id != request.user.pk and not request.user.is_superuser):
            raise Http404("No such draft.")
        if job.state != JobState.DRAFT:
            # Confirm clicked twice, or the page reloaded: show the job the first made.
            self.message_user(
                request,
                format_html("This selection was already confirmed: {}.", job_link(job)),
                messages.INFO,
            )
            return HttpResponseRedirect(self.changelist_url())
        row = Settings.objects.current()
        form = BulkOptionsForm(request.POST if request.method == "POST" else None, row=row)
        wants_start = "_confirm" in request.POST or "_try_first" in request.POST
        try:
            if request.method == "POST" and wants_start and form.is_valid():
                result = bulk.confirm(
                    job=job,
                    options=form.options(),
                    actor=request.user,
                    on_shortfall=form.shortfall(),
                    try_first=bulk.TRY_FIRST if "_try_first" in request.POST else None,
                )
                self.message_user(request, *confirmation_message(result))
                return HttpResponseRedirect(self.changelist_url())
            options = form.options() if form.is_bound and form.is_valid() else None
            look = bulk.preview(job=job, options=options or bulk.BulkOptions.defaults(row))
        except bulk.ScopeError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(self.changelist_url())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": "Regenerate metadata with AI",
            "job": job,
            "scope": bulk.describe_scope(job),
            "form": form,
            "preview": look,
            "try_first": bulk.TRY_FIRST,
            "has_view_permission": self.has_view_permission(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.bulk_template, context)

    # --- jobs on the change page --------------------------------------------------------

    def asset_url(self, view: str, asset_id: int) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{view}",
            args=[asset_id],
        )

    def panel_context(
        self, request: HttpRequest, asset_id: int, *, item: JobItem | None, **extra: Any
    ) -> dict[str, Any]:
        """What the job panel shows: an active item polls; otherwise it is quiet."""
        panel: dict[str, Any] = {
            "state": "idle",
            "item": item,
            "poll_url": self.asset_url("job_panel", asset_id),
            "regenerate_url": self.asset_url("regenerate", asset_id),
            "change_url": self.asset_url("change", asset_id),
            # The form's metadata inputs ride along with each poll, so the server can
            # tell whether the person has typed anything before it swaps new values in.
            "include": ",".join(f"#id_{name}" for name in (*EDITABLE_FIELDS, "based_on_revision")),
            **extra,
        }
        if item is not None and item.state in ACTIVE_ITEM_STATES:
            if item.job.state == JobState.PAUSED:
                panel["state"] = "paused"
            else:
                panel["state"] = "active"
                panel["status"] = item_status(item)
        return panel

    def regenerate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: a single job for this image; asks first when fields were edited by hand."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        asset = self.get_object(request, unquote(object_id))
        if asset is None:
            raise Http404("No such image.")
        # A paid call: change permission on the image is not enough.
        if not (
            self.has_change_permission(request, asset)
            and self.has_run_regeneration_permission(request)
        ):
            raise PermissionDenied
        choice = request.POST.get("manual")
        hand_edited = single.manual_fields(asset)
        if hand_edited and choice not in {"replace", "keep"}:
            return self.regenerate_confirmation(request, asset, hand_edited)

        result = single.request_regeneration(
            asset=asset, actor=request.user, replace_manual=choice == "replace"
        )
        if result.refused:
            message, level = f"Not regenerated: {result.refused}", messages.ERROR
        elif not result.started:
            message = (
                f"This image is already being worked on by job #{result.busy_job_id}; "
                "its result will appear here."
            )
            level = messages.WARNING
        else:
            message = f"Regenerating this image's metadata — job #{result.job.pk}."
            level = messages.INFO
        if not request.htmx:
            self.message_user(request, message, level)
            return HttpResponseRedirect(self.asset_url("change", asset.pk))
        # An HTMX click: answer with the panel, which polls while the image has an active
        # item (ours, or the job that already held the image).
        item = JobItem.objects.active_for_asset(asset.pk).select_related("job").first()
        panel = self.panel_context(request, asset.pk, item=item)
        if result.refused:
            panel.update(state="refused", message=message)
        elif not result.started:
            panel["notice"] = message
        return TemplateResponse(request, PANEL_TEMPLATE, {"panel": panel})

    def regenerate_confirmation(
        self, request: HttpRequest, asset: MediaAsset, hand_edited: list[str]
    ) -> HttpResponse:
        """Replace the hand-edited fields too, or keep them? In the panel, or as a page."""
        panel = self.panel_context(
            request,
            asset.pk,
            item=None,
            state="confirm",
            hand_edited=[
                {"label": LABELS[name], "value": getattr(asset, name)} for name in hand_edited
            ],
        )
        if request.htmx:
            return TemplateResponse(request, PANEL_TEMPLATE, {"panel": panel})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": "Regenerate metadata?",
            "original": asset,
            "panel": panel,
            "has_view_permission": self.has_view_permission(request, asset),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    def job_panel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The panel's poll. 200 while the image has an active item (polling goes on);
        286 (htmx: stop polling) otherwise, with the final values swapped in out of band.

        A poll costs the same few queries whatever the size of the job or the library.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        asset_id = _asset_id(object_id)
        if asset_id is None:
            raise Http404("No such image.")
        item = JobItem.objects.active_for_asset(asset_id).select_related("job").first()
        if item is not None:
            panel = self.panel_context(request, asset_id, item=item)
            response = TemplateResponse(request, PANEL_TEMPLATE, {"panel": panel})
            if panel["state"] == "paused":
                # Nothing will move until a person resumes the job: stop asking.
                response.status_code = STOP_POLLING
            return response

        asset = self.get_object(request, str(asset_id))
        if asset is None:
            raise Http404("No such image.")
        finished = _finished_item(request.GET.get("item"), asset_id)
        context: dict[str, Any] = {
            "panel": self.panel_context(request, asset_id, item=None),
        }
        if finished is not None:
            context["panel"].update(self.result_context(finished))
            edited = unsaved_edits(request.GET, asset)
            if edited:
                context["panel"]["unsaved"] = [history.FIELD_LABELS[name] for name in edited]
            else:
                context["adminform"] = self.metadata_admin_form(request, asset)
            context["inline_admin_formsets"] = self.history_formsets(request, asset)
        response = TemplateResponse(request, PANEL_UPDATE_TEMPLATE, context)
        response.status_code = STOP_POLLING
        return response

    def result_context(self, item: JobItem) -> dict[str, Any]:
        revision = item.revision
        rows = []
        if revision is not None:
            rows = [
                {
                    "label": LABELS.get(name, name),
                    "value": getattr(revision, name, ""),
                    "source": Source(getattr(revision, f"{name}_source", "")).label,
                }
                for name in revision.changed_fields
                if name in FIELDS
            ]
        return {"state": "done", "item": item, "revision": revision, "rows": rows}

    def metadata_admin_form(self, request: HttpRequest, asset: MediaAsset) -> helpers.AdminForm:
        """The change form's fieldsets as changeform_view builds them, for an OOB swap."""
        fieldsets = list(self.get_fieldsets(request, asset))
        form_class = self.get_form(request, asset, change=True, fields=flatten_fieldsets(fieldsets))
        if self.has_change_permission(request, asset):
            readonly = self.get_readonly_fields(request, asset)
            prepopulated = self.get_prepopulated_fields(request, asset)
        else:
            readonly, prepopulated = flatten_fieldsets(fieldsets), {}
        return helpers.AdminForm(
            form_class(instance=asset), fieldsets, prepopulated, readonly, model_admin=self
        )

    def history_formsets(self, request: HttpRequest, asset: MediaAsset) -> list[Any]:
        formsets, inlines = [], []
        for formset_class, inline in self.get_formsets_with_inlines(request, asset):
            prefix = formset_class.get_default_prefix()
            formsets.append(
                formset_class(**self.get_formset_kwargs(request, asset, inline, prefix))
            )
            inlines.append(inline)
        return self.get_inline_formsets(request, formsets, inlines, asset)

    # --- metadata history, compare, restore ---------------------------------------------
    # Read with view permission; restore (a new revision, revisions.restore) needs change
    # permission on the image. Every page costs the same few queries however long the
    # history: one page of revisions with the rows they name (history()).

    history_template = "admin/mediaopt/mediaasset/history.html"
    compare_template = "admin/mediaopt/mediaasset/history_compare.html"
    restore_template = "admin/mediaopt/mediaasset/restore.html"
    history_per_page = 20

    def history_asset(self, request: HttpRequest, object_id: str) -> MediaAsset:
        """The image whose history is asked for: 403 without view permission, 404 if none."""
        asset = self.get_object(request, unquote(object_id))
        if not self.has_view_permission(request, asset):
            raise PermissionDenied
        if asset is None:
            raise Http404("No such image.")
        return asset

    def history_revision(self, asset: MediaAsset, raw_id: Any) -> MetadataRevision:
        """One of ``asset``'s revisions by id; 404 for anything else (another image's)."""
        revision_id = _int_or_none(raw_id)
        revision = (
            MetadataRevision.objects.history(asset.pk).filter(pk=revision_id).first()
            if revision_id is not None and 0 < revision_id <= MAX_ID
            else None
        )
        if revision is None:
            raise Http404("No such revision of this image.")
        return revision

    def history_context(
        self, request: HttpRequest, asset: MediaAsset, *, title: str, **extra: Any
    ) -> dict[str, Any]:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": title,
            "subtitle": str(asset),
            "original": asset,
            "has_view_permission": self.has_view_permission(request, asset),
            "can_restore": self.has_change_permission(request, asset),
            "change_url": self.asset_url("change", asset.pk),
            "history_url": self.asset_url("metadata_history", asset.pk),
            "compare_url": self.asset_url("metadata_compare", asset.pk),
            **extra,
        }

    def metadata_history_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The image's revisions, newest first, each beside the current values."""
        asset = self.history_asset(request, object_id)
        paginator = Paginator(MetadataRevision.objects.history(asset.pk), self.history_per_page)
        page = paginator.get_page(request.GET.get("page"))
        entries = history.history_entries(
            page.object_list, current=asset, current_revision_id=asset.current_revision_id
        )
        # Preselected for "Compare selected revisions": the newest older revision on the
        # page against the current values.
        default_from = next((e.revision.pk for e in entries if not e.is_current), None)
        context = self.history_context(
            request,
            asset,
            title="Metadata history",
            page=page,
            entries=entries,
            default_from=default_from,
        )
        return TemplateResponse(request, self.history_template, context)

    def metadata_compare_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Two revisions (or one and the current values) side by side: ?from=ID&to=ID|current."""
        asset = self.history_asset(request, object_id)
        old = self.history_revision(asset, request.GET.get("from"))
        raw_to = request.GET.get("to") or CURRENT
        new: MetadataRevision | None = (
            None if raw_to == CURRENT else self.history_revision(asset, raw_to)
        )
        rows = history.field_rows(old, asset if new is None else new)
        context = self.history_context(
            request,
            asset,
            title="Compare metadata revisions",
            old=old,
            old_kind=history.kind_label(old),
            new=new,
            new_kind=history.kind_label(new) if new is not None else "",
            rows=rows,
            differences=sum(row.differs for row in rows),
        )
        return TemplateResponse(request, self.compare_template, context)

    def metadata_restore_view(
        self, request: HttpRequest, object_id: str, revision_id: int
    ) -> HttpResponse:
        """GET: what restoring would change, a box per field. POST: revisions.restore."""
        asset = self.get_object(request, unquote(object_id))
        if not self.has_change_permission(request, asset):
            raise PermissionDenied
        if asset is None:
            raise Http404("No such image.")
        revision = self.history_revision(asset, revision_id)
        if request.method != "POST":
            return self.restore_confirmation(request, asset, revision)

        chosen = [
            name for name in request.POST.getlist("fields") if name in revisions.UNDOABLE_FIELDS
        ]
        if not chosen:
            self.message_user(request, "Choose at least one field to restore.", messages.WARNING)
            return HttpResponseRedirect(request.path)
        try:
            restored = revisions.restore(
                revision=revision,
                fields=chosen,
                actor=request.user,
                based_on_revision_id=_int_or_none(request.POST.get("based_on_revision")),
            )
        except revisions.StaleRevision:
            # Shown again with the values the image has now, the person's choice kept.
            asset.refresh_from_db()
            self.message_user(
                request,
                f"This image's metadata changed since you opened it (now revision "
                f"{revision_number(asset.current_revision_id)}). Nothing was restored; "
                "check the values below and restore again.",
                messages.ERROR,
            )
            return self.restore_confirmation(request, asset, revision, chosen=chosen)
        if restored is None:
            self.message_user(
                request,
                "Nothing restored: the image already has those values.",
                messages.WARNING,
            )
            return HttpResponseRedirect(request.path)
        count = len(restored.changed_fields)
        self.message_user(
            request,
            f"Restored {count} field{'' if count == 1 else 's'} from revision "
            f"{revision.number} as revision {restored.number}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.asset_url("metadata_history", asset.pk))

    def restore_confirmation(
        self,
        request: HttpRequest,
        asset: MediaAsset,
        revision: MetadataRevision,
        *,
        chosen: Sequence[str] | None = None,
    ) -> HttpResponse:
        # Old on the left is what the image has now, new is what it would get back.
        rows = history.field_rows(asset, revision)
        context = self.history_context(
            request,
            asset,
            title=f"Restore revision {revision.number}?",
            step=f"Restore revision {revision.number}",
            revision=revision,
            kind=history.kind_label(revision),
            rows=rows,
            chosen=revisions.UNDOABLE_FIELDS if chosen is None else tuple(chosen),
            restorable=any(row.differs for row in rows),
            based_on_revision=asset.current_revision_id,
        )
        return TemplateResponse(request, self.restore_template, context)


def upload_summary(
    outcomes: Sequence[ingest.ImportOutcome],
    *,
    job_id: int | None = None,
    without_ai: int | None = None,
) -> tuple[str, int]:
    """One line for the whole batch, e.g. "2 images uploaded; their metadata is being
    written — job #7; 1 duplicate skipped (...)".

    Names are the user's own file names; the admin's message template escapes them.
    """
    imported = [o for o in outcomes if o.status == ingest.IMPORTED]
    duplicates = [o for o in outcomes if o.status == ingest.DUPLICATE]
    rejected = [o for o in outcomes if o.status == ingest.REJECTED]
    parts = [f"{len(imported)} image{'' if len(imported) == 1 else 's'} uploaded"]
    if job_id is not None:
        whose = "its" if len(imported) == 1 else "their"
        parts.append(f"{whose} metadata is being written — job #{job_id}")
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
    return "; ".join(parts), level


# --- the job panel ----------------------------------------------------------------------

PANEL_TEMPLATE = "admin/mediaopt/mediaasset/job_panel.html"
PANEL_UPDATE_TEMPLATE = "admin/mediaopt/mediaasset/job_panel_update.html"
CONFIRM_TEMPLATE = "admin/mediaopt/mediaasset/regenerate_confirmation.html"
# htmx stops a poll when the answer is 286 (and still swaps its content).
STOP_POLLING = 286
# Compare's "to" for the image's values now rather than a revision.
CURRENT = "current"


def job_link(job: RegenerationJob) -> str:
    """A link to the job's admin page, or its number while that page does not exist."""
    try:
        url = reverse("admin:metadata_regenerationjob_change", args=[job.pk])
    except NoReverseMatch:
        return f"job #{job.pk}"
    return format_html('<a href="{}">job #{}</a>', url, job.pk)


def confirmation_message(result: bulk.Confirmation) -> tuple[str, int]:
    if result.already_confirmed:
        text = format_html("This selection was already confirmed: {}.", job_link(result.job))
        return text, messages.INFO
    if not result.started:
        return result.message, messages.WARNING
    noun = "image" if result.items == 1 else "images"
    text = format_html(
        "Regenerating metadata for {} {} — {}.", f"{result.items:,}", noun, job_link(result.job)
    )
    notes = []
    if result.busy_count:
        notes.append(f"{result.busy_count:,} already being worked on by another job")
    if result.nothing_to_do:
        notes.append(f"{result.nothing_to_do:,} with nothing to fill")
    if notes:
        text = format_html("{} Left out: {}.", text, "; ".join(notes))
    if result.job.options.get("pause_after"):
        text = format_html(
            "{} It pauses after the first {} for you to review.",
            text,
            result.job.options["pause_after"],
        )
    return text, messages.SUCCESS


def _int_or_none(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _asset_id(object_id: str) -> int | None:
    try:
        return int(unquote(object_id))
    except ValueError:
        return None


def _finished_item(raw: str | None, asset_id: int) -> JobItem | None:
    """The item the panel was following, once it has ended (none: nothing to report)."""
    try:
        item_id = int(raw or "")
    except ValueError:
        return None
    return (
        JobItem.objects.filter(pk=item_id, asset_id=asset_id)
        .select_related("job", "revision")
        .first()
    )


def item_status(item: JobItem) -> str:
    """Where an active item stands, in words."""
    if item.state == ItemState.CLAIMED:
        return "writing now"
    if item.attempts and item.error:
        return f"will try again shortly (attempt {item.attempts} failed: {item.error})"
    if item.job.state == JobState.QUEUED:
        return "waiting for a worker"
    return "next in line"


def _normalised(value: str) -> str:
    # A textarea's value comes back with CRLF line ends and the model stores LF.
    return value.replace("\r\n", "\n").strip()


def unsaved_edits(data: Any, asset: MediaAsset) -> list[str]:
    """Fields whose input (sent along with the poll) differs from the revision the form
    was rendered from: the person has typed something, and it must not be overwritten.

    Without the form's inputs (a view-only page), nothing is being edited.
    """
    based_on = data.get("based_on_revision")
    if not based_on:
        return []
    revision = (
        MetadataRevision.objects.filter(pk=based_on, asset_id=asset.pk).first()
        if str(based_on).isdigit()
        else None
    )
    if revision is None:
        return list(EDITABLE_FIELDS)
    edited = [
        name
        for name in FIELDS
        if _normalised(data.get(name, "")) != _normalised(getattr(revision, name))
    ]
    if bool(data.get("is_decorative")) != revision.is_decorative:
        edited.append("is_decorative")
    return edited
