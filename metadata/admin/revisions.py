"""The revision log: read-only, since revisions are append-only and written by
revisions.py alone."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)

from mediaopt.library.admin import ReadOnlyAdminMixin
from metadata.models import (
    MetadataRevision,
)


@admin.register(MetadataRevision)
class MetadataRevisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
