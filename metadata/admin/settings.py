"""The settings page: the installation's one Settings row, and the recent jobs below its
form with live progress."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, reverse

from mediaopt.library.admin import admin_route
from mediaopt.library.fields import (
    FIELDS,
    LABELS,
)
from metadata import quality, relint
from metadata.admin.common import (
    RECENT_JOBS,
    STOP_POLLING,
)
from metadata.forms import LanguageTagField, language_help
from metadata.models import (
    JobState,
    RegenerationJob,
    Settings,
)


class SettingsForm(forms.ModelForm):
    # A JSON list in the database, but a person picks from the five known fields.
    default_fields = forms.MultipleChoiceField(
        choices=[(name, LABELS[name]) for name in FIELDS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Fields written unless a run chooses others.",
    )
    language = LanguageTagField()

    class Meta:
        model = Settings
        fields = [
            "generate_on_upload",
            "heuristic_fallback",
            "default_fields",
            "default_strategy",
            "review_by_default",
            "language",
            "site_context",
            "model",
            "detail",
            "requests_per_minute",
            "tokens_per_minute",
            "revisions_keep",
            "revisions_keep_days",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["language"].help_text = language_help(self.instance.language)

    def clean_default_fields(self) -> list[str]:
        chosen = set(self.cleaned_data["default_fields"])
        # Stored in schema order, so the row reads the same whichever way it was ticked.
        return [name for name in FIELDS if name in chosen]


# Only queued and running jobs move by themselves: the rest wait for a person.
MOVING_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


@admin.register(Settings)
class SettingsAdmin(admin.ModelAdmin):
    """One row for the installation: the changelist is a doorway to its change page."""

    jobs_template = "admin/metadata/settings/jobs.html"

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
                    "review_by_default",
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
            admin_route(self, "jobs/", self.jobs_view, "jobs"),
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
        extra_context["quality"] = quality_context()
        return super().change_view(request, object_id, form_url, extra_context)

    def jobs_view(self, request: HttpRequest) -> HttpResponse:
        """The jobs list's poll: 200 while a listed job is queued or running, else 286."""
        if not self.may_see_jobs(request):
            raise PermissionDenied
        context = self.jobs_context(request)
        response = TemplateResponse(request, self.jobs_template, context)
        if not context["jobs_moving"]:
            response.status_code = STOP_POLLING
        return response


def quality_context() -> dict[str, Any] | None:
    """The latest re-check of the library: images with findings, per rule (one query)."""
    run = relint.latest_run()
    if run is None:
        return None
    return {
        "run": run,
        "rules": [
            {"code": code, "count": count, "meaning": quality.RULES.get(code, "")}
            for code, count in run.counts.items()
        ],
    }
