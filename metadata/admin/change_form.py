"""The image's change form as the metadata app sees it: every save is a revision written
by revisions.py (only the fields the person changed become manual), a form opened on an
older revision refuses to save over a newer one, and the history below is read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import F, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.utils.html import format_html, format_html_join

from mediaopt.library.admin import ReadOnlyAdminMixin
from mediaopt.library.fields import (
    EDITABLE_FIELDS,
    FIELDS,
)
from mediaopt.library.models import MediaAsset
from metadata import revisions
from metadata.models import MetadataRevision, Proposal


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


# How many revisions the image's page lists; the history page has the rest.
INLINE_REVISIONS = 10


class RevisionInline(ReadOnlyAdminMixin, admin.TabularInline):
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
        # The latest few: an image with hundreds of revisions would render them all (half
        # a second and half a megabyte at 200); the full history page pages through them.
        latest = F("asset__current_revision__number") - INLINE_REVISIONS
        return super().get_queryset(request).filter(number__gt=latest).select_related("actor")

    @admin.display(description="changed")
    def changed_fields_display(self, revision: MetadataRevision) -> str:
        return ", ".join(revision.changed_fields) or "—"


class MetadataChangeFormMixin:
    """For LibraryAdmin: the change form's save goes through revisions.py."""

    form = MediaAssetForm
    inlines = [RevisionInline]

    @admin.display(description="quality checks")
    def checks_display(self, asset: MediaAsset) -> str:
        """What the checks found in the current values, and a result waiting for review."""
        revision = asset.current_revision
        findings = (revision.findings if revision is not None else None) or []
        items = format_html_join(
            "",
            '<li class="mediaopt-finding mediaopt-finding-{}"><code>{}</code> {}</li>',
            (
                (f.get("level", ""), f.get("code", ""), f.get("message", ""))
                for f in findings
                if isinstance(f, dict)
            ),
        )
        waiting = Proposal.objects.pending().filter(asset_id=asset.pk).first()
        note = ""
        if waiting is not None:
            note = format_html(
                '<p class="mediaopt-waiting">A result waits for review: {}.</p>',
                waiting.get_reason_display().lower(),
            )
        if not items and not note:
            return "No findings."
        return format_html('{}<ul class="mediaopt-findings">{}</ul>', note, items)

    @admin.display(description="current revision")
    def revision_display(self, asset: MediaAsset) -> str:
        revision = asset.current_revision
        if revision is None:
            return "—"
        return f"{revision.number} ({revision.get_kind_display()})"

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
