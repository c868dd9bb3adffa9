"""Regeneration jobs: the list, and a job's page as its progress and controls (pause,
resume, cancel, retry failed; undo in admin/undo.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

from mediaopt.library.admin import ReadOnlyAdminMixin, page_context
from mediaopt.library.models import MediaAsset
from metadata import bulk, jobs, progress, undo
from metadata.admin.common import (
    STOP_POLLING,
    may_run,
)
from metadata.admin.undo import UndoMixin
from metadata.models import (
    FINAL_JOB_STATES,
    JobKind,
    JobState,
    RegenerationJob,
)

FAILURES_PER_PAGE = 100
# Jobs whose images may get the heuristic instead of AI (the settings' upload fallback).
FALLBACK_KINDS = frozenset({JobKind.UPLOAD, JobKind.IMPORT})


@admin.register(RegenerationJob)
class RegenerationJobAdmin(UndoMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Jobs are created by their features and moved only by jobs.py: the list shows them,
    a job's page is its progress and its controls (pause, resume, cancel, retry failed,
    undo)."""

    panel_template = "admin/metadata/regenerationjob/job_panel.html"
    progress_template = "admin/metadata/regenerationjob/job_progress.html"
    cancel_template = "admin/metadata/regenerationjob/cancel_confirmation.html"
    failures_template = "admin/metadata/regenerationjob/failures.html"

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
                    "queue",
                    "created_by",
                    "account",
                    "retry_of",
                    "undo_of",
                )
            },
        ),
        ("What", {"fields": ("scope_display", "options_display")}),
    )
    # State, pause reason and times are in the polled panel, so nothing below can go stale.
    readonly_fields = ("scope_display", "options_display")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        jobs = super().get_queryset(request).with_progress()
        # The list shows jobs someone asked for; a draft's own page still opens (its
        # confirmation page links to it).
        match = request.resolver_match
        if match is not None and match.url_name.endswith("_changelist"):
            return jobs.listed()
        return jobs

    @admin.display(description="progress")
    def progress_display(self, job: RegenerationJob) -> str:
        return f"{job.item_done}/{job.item_total}"

    @admin.display(description="scope")
    def scope_display(self, job: RegenerationJob) -> str:
        return bulk.describe_scope(job)

    @admin.display(description="options")
    def options_display(self, job: RegenerationJob) -> str:
        return progress.describe_options(options=job.options or {})

    @admin.display(description="of job")
    def of_job_display(self, job: RegenerationJob) -> str | None:
        """The job an undo or a retry is about (its id is on the row: no query)."""
        target = job.undo_of_id or job.retry_of_id
        if target is None:
            return None
        return format_html('<a href="{}">#{}</a>', self.job_url("change", target), target)

    # --- the job's page -----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        views = {
            "progress": self.progress_view,
            "pause": self.pause_view,
            "resume": self.resume_view,
            "cancel": self.cancel_view,
            "retry_failed": self.retry_failed_view,
            "undo": self.undo_view,
            "failures": self.failures_view,
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
        summary = progress.job_summary(job)
        state = job.state
        runs = may_run(request)
        return {
            "job": job,
            "summary": summary,
            # A GROUP BY over the skipped items: not on every poll of a moving job.
            "skips": (
                progress.skips_by_reason(job=job)
                if summary.progress.skipped
                and not summary.pruned
                and state not in {JobState.QUEUED, JobState.RUNNING}
                else []
            ),
            # Said for uploads and imports (and runs without AI), whose images may get the
            # heuristic instead; a bulk job with AI never falls back.
            "fallbacks": progress.fallbacks_by_reason(job=job)
            if summary.progress.succeeded and not summary.pruned and job.kind in FALLBACK_KINDS
            else [],
            "notice": notice,
            "urls": {
                name: self.job_url(name, job.pk)
                for name in ("progress", "pause", "resume", "cancel", "retry_failed", "failures")
            },
            "controls": {
                "pause": runs and state in {JobState.QUEUED, JobState.RUNNING},
                "resume": runs and state == JobState.PAUSED,
                "cancel": runs and state not in FINAL_JOB_STATES,
                # An undo's failures are undone by undoing its job again (jobs.retry_failed).
                "retry_failed": runs
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

    def failures_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Every failed image of the job with its reason, a page at a time."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = self._job(request, object_id)
        # The job row's count: no count over the items (and it outlives their pruning).
        total = job.items_failed
        pruned = job.items_pruned_at is not None
        page_count = 1 if pruned else max(1, -(-total // FAILURES_PER_PAGE))
        try:
            number = min(max(1, int(request.GET.get("page", "1"))), page_count)
        except ValueError:
            number = 1
        link = self.job_url("failures", job.pk)
        context = page_context(
            self,
            request,
            title=f"Failed images of job #{job.pk}",
            obj=job,
            original=job,
            change_url=self.job_url("change", job.pk),
            failures=[]
            if pruned
            else progress.failures(
                job, limit=FAILURES_PER_PAGE, offset=(number - 1) * FAILURES_PER_PAGE
            ),
            total=total,
            pruned_at=job.items_pruned_at,
            number=number,
            page_count=page_count,
            previous_url=f"{link}?page={number - 1}" if number > 1 else "",
            next_url=f"{link}?page={number + 1}" if number < page_count else "",
        )
        return TemplateResponse(request, self.failures_template, context)

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
        response = TemplateResponse(request, self.progress_template, context)
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
        if not (self.has_view_permission(request) and may_run(request)):
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
                request, self.panel_template, self.panel_context(request, job, notice=notice)
            )
        self.message_user(request, message, level)
        return HttpResponseRedirect(self.job_url("change", job.pk))

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def pause(job: RegenerationJob) -> str:
            jobs.pause(job, reason=f"Paused by {request.user.get_username()}.", by=request.user)
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
        if request.method == "POST" and request.POST.get("confirm") != "yes" and may_run(request):
            job = self._job(request, object_id)
            context = page_context(
                self,
                request,
                title=f"Cancel job #{job.pk}?",
                original=job,
                summary=progress.job_summary(job),
                cancel_url=self.job_url("cancel", job.pk),
                change_url=self.job_url("change", job.pk),
                has_view_permission=True,
            )
            return TemplateResponse(request, self.cancel_template, context)

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
        if not (self.has_view_permission(request) and may_run(request)):
            raise PermissionDenied
        job = self._job(request, object_id)
        try:
            creation = jobs.retry_failed(job=job, actor=request.user)
        except jobs.NothingToRetry as error:
            self.message_user(request, str(error), messages.WARNING)
            target = self.job_url("change", job.pk)
        else:
            count = creation.job.items_total
            message = f"Retrying {count} failed image{'' if count == 1 else 's'} of job #{job.pk}"
            message += f" — job #{creation.job.pk}."
            if creation.busy_count:
                message += f" {creation.busy_count} already in another job were left out."
            self.message_user(request, message, messages.SUCCESS)
            target = self.job_url("change", creation.job.pk)
        if request.htmx:
            return HttpResponseClientRedirect(target)
        return HttpResponseRedirect(target)
