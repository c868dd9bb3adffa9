"""The settings page and the read-only revision log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from metadata.models import MetadataRevision, Settings
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
