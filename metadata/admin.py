"""The settings page, the read-only revision log, and regeneration jobs with their controls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django_htmx.http import HttpResponseClientRedirect

from mediaopt.models import MediaAsset
from metadata import jobs, undo
from metadata.history import FIELD_LABELS
from metadata.models import (
    JobKind,
    JobState,
    MetadataRevision,
    RegenerationJob,
    Settings,
)
from metadata.schema import FIELDS, LABELS


class SettingsForm(forms.ModelForm):
    # A JSON list in the database, but a person picks from the five known fields.
    default_fields = forms.MultipleChoiceField(
        choices=[(name, LABELS[name]) for name in FIELDS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Fields written unless a run chooses others.",
    )

    class Meta:
        model = Settings
        fields = [
            "generate_on_upload",
            "heuristic_fallback",
            "default_fields",
            "default_strategy",
            "language",
            "site_context",
            "model",
            "detail",
            "requests_per_minute",
            "tokens_per_minute",
            "revisions_keep",
            "revisions_keep_days",
        ]

    def clean_default_fields(self) -> list[str]:
        chosen = set(self.cleaned_data["default_fields"])
        # Stored in schema order, so the row reads the same whichever way it was ticked.
        return [name for name in FIELDS if name in chosen]


@admin.register(Settings)
class SettingsAdmin(admin.ModelAdmin):
    """One row for the installation: the changelist is a doorway to its change page."""

    form = SettingsForm
    fieldsets = (
        (
            "Generation",
            {
                "fields": (
                    "generate_on_upload",
                    "heuristic_fallback",
                    "default_fields",
                    "default_strategy",
                    "language",
                    "site_context",
                )
            },
        ),
        ("Model", {"fields": ("model", "detail")}),
        ("Rate limits", {"fields": ("requests_per_minute", "tokens_per_minute")}),
        ("History", {"fields": ("revisions_keep", "revisions_keep_days")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        row = Settings.objects.current()
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:metadata_settings_change", args=[row.pk])
        )

    def response_change(self, request: HttpRequest, obj: Settings) -> HttpResponse:
        # The admin's default says "The settings “Settings” was changed" and goes to a
        # list that only leads back here; stay on the page instead.
        self.message_user(request, "Settings saved.", messages.SUCCESS)
        return HttpResponseRedirect(request.path)

    # --- the recent jobs, below the form ------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        # Before super()'s: its "<path:object_id>/" would swallow "jobs/".
        return [
            path(
                "jobs/",
                self.admin_site.admin_view(self.jobs_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_jobs",
            )
        ] + super().get_urls()

    def may_see_jobs(self, request: HttpRequest) -> bool:
        opts = RegenerationJob._meta
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}")

    def jobs_context(self, request: HttpRequest) -> dict[str, Any]:
        recent = list(RegenerationJob.objects.recent_with_progress(limit=RECENT_JOBS))
        return {
            "recent_jobs": recent,
            "jobs_url": reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_jobs"
            ),
            # Only queued and running jobs move by themselves: the rest wait for a person.
            "jobs_moving": any(job.state in MOVING_JOB_STATES for job in recent),
        }

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if self.may_see_jobs(request):
            extra_context["jobs_panel"] = self.jobs_context(request)
        return super().change_view(request, object_id, form_url, extra_context)

    def jobs_view(self, request: HttpRequest) -> HttpResponse:
        """The jobs list's poll: 200 while a listed job is queued or running, else 286."""
        if not self.may_see_jobs(request):
            raise PermissionDenied
        context = self.jobs_context(request)
        response = TemplateResponse(request, SETTINGS_JOBS_TEMPLATE, context)
        if not context["jobs_moving"]:
            response.status_code = STOP_POLLING
        return response


@admin.register(MetadataRevision)
class MetadataRevisionAdmin(admin.ModelAdmin):
    """Revisions are append-only and written by revisions.py alone: this is a log."""

    list_display = (
        "asset",
        "number",
        "kind",
        "changed_fields_display",
        "provider",
        "model",
        "actor",
        "created_at",
    )
    list_filter = ("kind", "provider")
    list_select_related = ("asset", "actor")
    search_fields = ("asset__original_name",)
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("asset", "number", "kind", "changed_fields", "parent", "job")}),
        (
            "Values",
            {
                "fields": (
                    ("alt_text", "alt_text_source"),
                    ("title", "title_source"),
                    ("caption", "caption_source"),
                    ("description", "description_source"),
                    ("keywords", "keywords_source"),
                    "is_decorative",
                )
            },
        ),
        (
            "Origin",
            {
                "fields": (
                    "actor",
                    ("provider", "model"),
                    ("prompt_tokens", "completion_tokens"),
                    "created_at",
                )
            },
        ),
    )
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("asset", "actor", "parent", "job")

    @admin.display(description="changed fields")
    def changed_fields_display(self, revision: MetadataRevision) -> str:
        return ", ".join(revision.changed_fields) or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- regeneration jobs ------------------------------------------------------------------

# Creating and controlling jobs; seeing them needs only the model's view permission.
RUN_PERMISSION = "metadata.run_regeneration"
# Undoing a job changes images' metadata: whoever may edit metadata may undo, no one else.
UNDO_PERMISSION = "mediaopt.change_mediaasset"
# htmx stops a poll when the answer is 286 (and still swaps its content).
STOP_POLLING = 286
JOB_PANEL_TEMPLATE = "admin/metadata/regenerationjob/job_panel.html"
JOB_PROGRESS_TEMPLATE = "admin/metadata/regenerationjob/job_progress.html"
JOB_CANCEL_TEMPLATE = "admin/metadata/regenerationjob/cancel_confirmation.html"
JOB_UNDO_TEMPLATE = "admin/metadata/regenerationjob/undo_confirmation.html"
SETTINGS_JOBS_TEMPLATE = "admin/metadata/settings/jobs.html"
RECENT_JOBS = 10
MOVING_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


def field_labels(names: list[str] | tuple[str, ...]) -> list[str]:
    """What an undo names: the five fields, and the decorative flag it also takes back."""
    return [FIELD_LABELS.get(name, name) for name in names]


@admin.register(RegenerationJob)
class RegenerationJobAdmin(admin.ModelAdmin):
    """Jobs are created by their features and moved only by jobs.py: the list shows them,
    a job's page is its progress and its controls (pause, resume, cancel, retry failed,
    undo)."""

    list_display = (
        "id",
        "kind",
        "of_job_display",
        "state",
        "progress_display",
        "created_by",
        "created_at",
    )
    list_display_links = ("id", "kind")
    list_filter = ("state", "kind")
    list_select_related = ("created_by",)
    show_full_result_count = False
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "kind",
                    "state",
                    "queue",
                    "created_by",
                    "account",
                    "retry_of",
                    "undo_of",
                )
            },
        ),
        ("What", {"fields": ("scope", "options")}),
        ("When", {"fields": ("created_at", "started_at", "finished_at")}),
        ("Why it stopped", {"fields": ("pause_reason", "error")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).with_progress()

    @admin.display(description="progress")
    def progress_display(self, job: RegenerationJob) -> str:
        return f"{job.item_done}/{job.item_total}"

    @admin.display(description="of job")
    def of_job_display(self, job: RegenerationJob) -> str | None:
        """The job an undo or a retry is about (its id is on the row: no query)."""
        target = job.undo_of_id or job.retry_of_id
        if target is None:
            return None
        return format_html('<a href="{}">#{}</a>', self.job_url("change", target), target)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only: a job changes only through the controls on its page.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def may_run(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERMISSION)

    def may_undo(self, request: HttpRequest) -> bool:
        return request.user.has_perm(UNDO_PERMISSION)

    # --- the job's page -----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        views = {
            "progress": self.progress_view,
            "pause": self.pause_view,
            "resume": self.resume_view,
            "cancel": self.cancel_view,
            "retry_failed": self.retry_failed_view,
            "undo": self.undo_view,
        }
        # Before super()'s: its "<path:object_id>/" would swallow "5/pause/".
        return [
            path(
                f"<path:object_id>/{name.replace('_', '-')}/",
                self.admin_site.admin_view(view),
                name=self.url_name(name),
            )
            for name, view in views.items()
        ] + super().get_urls()

    def url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def job_url(self, view: str, job_id: int) -> str:
        return reverse(f"{self.admin_site.name}:{self.url_name(view)}", args=[job_id])

    def panel_context(
        self,
        request: HttpRequest,
        job: RegenerationJob,
        *,
        notice: dict | None = None,
        with_controls: bool = True,
    ) -> dict[str, Any]:
        """What the job's panel shows: the summary, and the controls its state allows.

        ``with_controls=False`` (a poll whose state has not changed) leaves out what only
        the controls show, so each poll costs the same few queries.
        """
        summary = jobs.job_summary(job)
        state = job.state
        may_run = self.may_run(request)
        return {
            "job": job,
            "summary": summary,
            "notice": notice,
            "urls": {
                name: self.job_url(name, job.pk)
                for name in ("progress", "pause", "resume", "cancel", "retry_failed")
            },
            "controls": {
                "pause": may_run and state in {JobState.QUEUED, JobState.RUNNING},
                "resume": may_run and state == JobState.PAUSED,
                "cancel": may_run and state not in jobs.FINAL_JOB_STATES,
                # An undo's failures are undone by undoing its job again (jobs.retry_failed).
                "retry_failed": may_run
                and summary.final
                and summary.progress.failed > 0
                and job.kind != JobKind.UNDO,
            },
            "undo": self.undo_control(request, job) if with_controls else None,
            "changed": self.changed_images(request, job) if with_controls else None,
            "undo_of_url": self.job_url("change", job.undo_of_id) if job.undo_of_id else "",
            "undo_result": (
                self.undo_result_context(job)
                if job.kind == JobKind.UNDO and summary.final
                else None
            ),
        }

    def undo_control(self, request: HttpRequest, job: RegenerationJob) -> dict[str, Any] | None:
        """The Undo button, or why there is none; nothing for those who may not undo, nor
        for a draft (a selection nobody confirmed)."""
        if not self.may_undo(request) or job.state == JobState.DRAFT:
            return None
        return {
            "url": self.job_url("undo", job.pk),
            "label": "Undo this undo…" if job.kind == JobKind.UNDO else "Undo this job…",
            "refusal": undo.refusal(job),
        }

    def changed_images(self, request: HttpRequest, job: RegenerationJob) -> dict[str, Any] | None:
        """The media library filtered to the images the job wrote a revision on."""
        opts = MediaAsset._meta
        may_see = request.user.has_perm(
            f"{opts.app_label}.view_{opts.model_name}"
        ) or request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        if not may_see:
            return None
        count = undo.changed_assets(job).count()
        if not count:
            return None
        changelist = reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
        )
        return {"count": count, "url": f"{changelist}?job={job.pk}"}

    def asset_url(self, asset_id: int) -> str:
        opts = MediaAsset._meta
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[asset_id]
        )

    def undo_result_context(self, job: RegenerationJob) -> dict[str, Any]:
        """What a finished undo did: images restored, and those where values changed after
        the undone job were kept (or, with override, replaced anyway)."""
        outcome = undo.result(job)
        return {
            "restored": outcome.restored,
            "override": bool((job.options or {}).get("override")),
            "rows": [
                {
                    "name": item.asset.original_name,
                    "url": self.asset_url(item.asset_id),
                    "fields": field_labels(item.conflicts),
                }
                for item in outcome.kept
            ],
            "total": outcome.kept_total,
            "more": outcome.kept_total - len(outcome.kept),
        }

    def _job(self, request: HttpRequest, object_id: str) -> RegenerationJob:
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404("No such job.")
        return job

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if self.has_view_permission(request):
            job = self.get_object(request, unquote(object_id))
            if job is not None:
                extra_context["panel"] = self.panel_context(request, job)
        return super().change_view(request, object_id, form_url, extra_context)

    def progress_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The panel's poll: 200 while the job may still move, 286 (stop) once it is final.

        The controls ride along out of band only when the state differs from the one the
        page shows, so a button is not replaced under a person's pointer every second.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = self._job(request, object_id)
        controls_changed = request.GET.get("shown") != job.state
        context = self.panel_context(request, job, with_controls=controls_changed)
        context["controls_changed"] = controls_changed
        response = TemplateResponse(request, JOB_PROGRESS_TEMPLATE, context)
        if context["summary"].final:
            response.status_code = STOP_POLLING
        return response

    def _control(
        self,
        request: HttpRequest,
        object_id: str,
        act: Callable[[RegenerationJob], str],
    ) -> HttpResponse:
        """POST, with run_regeneration: do ``act``, then answer with the panel (htmx) or
        come back to the job's page with a message."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_view_permission(request) and self.may_run(request)):
            raise PermissionDenied
        job = self._job(request, object_id)
        try:
            message, level = act(job), messages.SUCCESS
        except jobs.IllegalTransition:
            job.refresh_from_db()
            message = f"Job #{job.pk} is {job.get_state_display().lower()}: nothing was changed."
            level = messages.WARNING
        if request.htmx:
            job.refresh_from_db()
            notice = {"text": message, "tag": messages.DEFAULT_TAGS[level]}
            return TemplateResponse(
                request, JOB_PANEL_TEMPLATE, self.panel_context(request, job, notice=notice)
            )
        self.message_user(request, message, level)
        return HttpResponseRedirect(self.job_url("change", job.pk))

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def pause(job: RegenerationJob) -> str:
            jobs.pause(job, reason=f"Paused by {request.user.get_username()}.")
            return f"Job #{job.pk} paused: no new image is started until it is resumed."

        return self._control(request, object_id, pause)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def resume(job: RegenerationJob) -> str:
            jobs.resume(job)
            return f"Job #{job.pk} resumed: it continues where it stopped."

        return self._control(request, object_id, resume)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Asks first: the htmx button confirms in the browser and says so; a plain form
        gets a confirmation page."""
        if (
            request.method == "POST"
            and request.POST.get("confirm") != "yes"
            and self.may_run(request)
        ):
            job = self._job(request, object_id)
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "app_label": self.opts.app_label,
                "title": f"Cancel job #{job.pk}?",
                "original": job,
                "summary": jobs.job_summary(job),
                "cancel_url": self.job_url("cancel", job.pk),
                "change_url": self.job_url("change", job.pk),
                "has_view_permission": True,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(request, JOB_CANCEL_TEMPLATE, context)

        def cancel(job: RegenerationJob) -> str:
            jobs.cancel(job)
            return (
                f"Job #{job.pk} cancelled: images not yet started are left as they were; "
                "any image already being written is finished."
            )

        return self._control(request, object_id, cancel)

    def retry_failed_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A new ``retry`` job for the failed images; the browser goes to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_view_permission(request) and self.may_run(request)):
            raise PermissionDenied
        job = self._job(request, object_id)
        try:
            creation = jobs.retry_failed(job=job, actor=request.user)
        except jobs.NothingToRetry as error:
            self.message_user(request, str(error), messages.WARNING)
            target = self.job_url("change", job.pk)
        else:
            count = creation.job.items.count()
            message = f"Retrying {count} failed image{'' if count == 1 else 's'} of job #{job.pk}"
            message += f" — job #{creation.job.pk}."
            if creation.busy_count:
                message += f" {creation.busy_count} already in another job were left out."
            self.message_user(request, message, messages.SUCCESS)
            target = self.job_url("change", creation.job.pk)
        if request.htmx:
            return HttpResponseClientRedirect(target)
        return HttpResponseRedirect(target)

    # --- undo ---------------------------------------------------------------------------

    def undo_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what undoing the job would do (undo.preview), to confirm. POST: the undo
        job (undo.start), then its page. Only for those who may change images' metadata."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not (self.has_view_permission(request) and self.may_undo(request)):
            raise PermissionDenied
        job = self._job(request, object_id)
        if request.method == "POST":
            return self.undo_confirmed(request, job)
        reason = undo.refusal(job)
        if reason:
            self.message_user(request, reason, messages.WARNING)
            return HttpResponseRedirect(self.job_url("change", job.pk))
        return self.undo_confirmation(request, job)

    def undo_confirmation(self, request: HttpRequest, job: RegenerationJob) -> HttpResponse:
        preview = undo.preview(job)
        names = dict(
            MediaAsset.objects.filter(
                pk__in=[plan.asset_id for plan in preview.sample]
            ).values_list("pk", "original_name")
        )
        rows = [
            {
                "name": names.get(plan.asset_id, f"Image {plan.asset_id}"),
                "url": self.asset_url(plan.asset_id),
                "restore": field_labels(plan.restore),
                "conflicts": field_labels(plan.conflicts),
                "unavailable": plan.unavailable,
            }
            for plan in preview.sample
        ]
        latest = undo.latest_undo(job)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": f"Undo job #{job.pk}?",
            "original": job,
            "preview": preview,
            "rows": rows,
            "rows_not_shown": preview.changed_since - len(rows),
            # The latest undo of this job when the page was shown: a second POST of the
            # same page finds a newer one and makes nothing (confirming twice, one undo).
            "seen_undo": latest.pk if latest is not None else "",
            "undo_url": self.job_url("undo", job.pk),
            "change_url": self.job_url("change", job.pk),
            "has_view_permission": True,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, JOB_UNDO_TEMPLATE, context)

    def undo_confirmed(self, request: HttpRequest, job: RegenerationJob) -> HttpResponse:
        latest = undo.latest_undo(job)
        if latest is not None and str(latest.pk) != request.POST.get("seen_undo", ""):
            message = format_html("This undo was already confirmed: {}.", self.job_link(latest))
            self.message_user(request, message, messages.INFO)
            return HttpResponseRedirect(self.job_url("change", latest.pk))
        try:
            started = undo.start(
                job=job, actor=request.user, override=request.POST.get("override") == "on"
            )
        except undo.CannotUndo as error:
            self.message_user(request, str(error), messages.WARNING)
            return HttpResponseRedirect(self.job_url("change", job.pk))
        count = started.job.items.count()
        message = format_html(
            "Undoing job #{} on {} image{} — {}. It costs no credits.",
            job.pk,
            f"{count:,}",
            "" if count == 1 else "s",
            self.job_link(started.job),
        )
        if started.busy_count:
            message = format_html(
                "{} {} already being worked on by another job {} left out: undo job #{} "
                "again once that job has finished to reach them.",
                message,
                f"{started.busy_count:,}",
                "was" if started.busy_count == 1 else "were",
                job.pk,
            )
        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(self.job_url("change", started.job.pk))

    def job_link(self, job: RegenerationJob) -> str:
        return format_html('<a href="{}">job #{}</a>', self.job_url("change", job.pk), job.pk)
