"""An image's metadata history, the comparison of two revisions, and restore.

Read with view permission; restore (a new revision, revisions.restore) needs change
permission on the image. Every page costs the same few queries however long the history:
one page of revisions with the rows they name (MetadataRevision.objects.history); what
the pages show is worked out in metadata/history.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern

from mediaopt.library.admin import admin_route, page_context
from mediaopt.library.fields import (
    EDITABLE_FIELDS,
)
from mediaopt.library.models import MediaAsset
from metadata import history, revisions
from metadata.admin.change_form import revision_number
from metadata.admin.common import (
    int_or_none,
)
from metadata.library_filters import MAX_ID
from metadata.models import (
    MetadataRevision,
)

# Compare's "to" for the image's values now rather than a revision.
CURRENT = "current"


class HistoryMixin:
    """For LibraryAdmin: the history, compare and restore pages."""

    history_template = "admin/mediaopt/mediaasset/history.html"
    compare_template = "admin/mediaopt/mediaasset/history_compare.html"
    restore_template = "admin/mediaopt/mediaasset/restore.html"
    history_per_page = 20

    def history_urls(self) -> list[URLPattern]:
        return [
            admin_route(
                self,
                "<path:object_id>/metadata-history/",
                self.metadata_history_view,
                "metadata_history",
            ),
            admin_route(
                self,
                "<path:object_id>/metadata-history/compare/",
                self.metadata_compare_view,
                "metadata_compare",
            ),
            admin_route(
                self,
                "<path:object_id>/metadata-history/<int:revision_id>/restore/",
                self.metadata_restore_view,
                "metadata_restore",
            ),
        ]

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
        revision_id = int_or_none(raw_id)
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
        return page_context(
            self,
            request,
            title=title,
            obj=asset,
            subtitle=str(asset),
            original=asset,
            can_restore=self.has_change_permission(request, asset),
            change_url=self.view_url("change", asset.pk),
            history_url=self.view_url("metadata_history", asset.pk),
            compare_url=self.view_url("metadata_compare", asset.pk),
            **extra,
        )

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

        chosen = [name for name in request.POST.getlist("fields") if name in EDITABLE_FIELDS]
        if not chosen:
            self.message_user(request, "Choose at least one field to restore.", messages.WARNING)
            return HttpResponseRedirect(request.path)
        try:
            restored = revisions.restore(
                revision=revision,
                fields=chosen,
                actor=request.user,
                based_on_revision_id=int_or_none(request.POST.get("based_on_revision")),
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
        return HttpResponseRedirect(self.view_url("metadata_history", asset.pk))

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
            chosen=EDITABLE_FIELDS if chosen is None else tuple(chosen),
            restorable=any(row.differs for row in rows),
            based_on_revision=asset.current_revision_id,
        )
        return TemplateResponse(request, self.restore_template, context)
