"""The Regenerate button and the job panel on an image's page: a single job for the
image (single.py), followed over htmx until it ends, when the new values are swapped in
unless the person has typed meanwhile."""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from mediaopt.library.admin import admin_route, page_context
from mediaopt.library.fields import (
    EDITABLE_FIELDS,
    FIELD_LABELS,
    FIELDS,
    LABELS,
    Source,
)
from mediaopt.library.models import MediaAsset
from metadata import single
from metadata.admin.common import (
    STOP_POLLING,
    may_run,
)
from metadata.models import (
    ACTIVE_ITEM_STATES,
    ItemState,
    JobItem,
    JobState,
    MetadataRevision,
)


class RegenerateMixin:
    """For LibraryAdmin: Regenerate, its confirmation, and the panel that follows the
    image's active job."""

    panel_template = "admin/mediaopt/mediaasset/job_panel.html"
    panel_update_template = "admin/mediaopt/mediaasset/job_panel_update.html"
    confirm_template = "admin/mediaopt/mediaasset/regenerate_confirmation.html"

    def regenerate_urls(self) -> list[URLPattern]:
        return [
            admin_route(self, "<path:object_id>/regenerate/", self.regenerate_view, "regenerate"),
            admin_route(self, "<path:object_id>/job-panel/", self.job_panel_view, "job_panel"),
            admin_route(self, "<path:object_id>/list-row/", self.list_row_view, "list_row"),
        ]

    def get_list_display(self, request: HttpRequest) -> Any:
        shown = super().get_list_display(request)
        if may_run(request) and self.has_change_permission(request):
            return (*shown, "regenerate_display")
        return shown

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BusyRowsChangeList

    @admin.display(description="")
    def regenerate_display(self, asset: MediaAsset) -> str:
        """A per-row Regenerate: a button of the one form the list template holds (the
        rows sit inside the actions form, and a form cannot hold another). A busy row
        polls for itself instead, until its job is done with it."""
        if getattr(asset, "mediaopt_busy", False):
            return format_html(
                '<span class="mediaopt-row-busy" hx-get="{}" hx-trigger="every 2s" '
                'hx-target="closest tr" hx-swap="outerHTML">Working…</span>',
                self.view_url("list_row", asset.pk),
            )
        return format_html(
            '<button type="submit" form="mediaopt-row-regenerate" formaction="{}" '
            'class="mediaopt-row-tool" aria-label="Regenerate {}">Regenerate</button>',
            self.view_url("regenerate", asset.pk),
            asset.original_name,
        )

    def list_row_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One row of the list as the list draws it; 286 (stop polling) once no job holds
        the image."""
        asset_id = _asset_id(object_id)
        if asset_id is None:
            raise Http404("No such image.")
        if not self.has_view_permission(request):
            raise PermissionDenied
        # The list itself, narrowed to this image: the row comes out cell for cell the same.
        narrowed = copy.copy(request)
        narrowed.GET = QueryDict(mutable=True)
        narrowed.GET["id__exact"] = str(asset_id)
        listed = self.get_changelist_instance(narrowed)
        if not listed.result_list:
            return HttpResponse("", status=STOP_POLLING)
        asset = listed.result_list[0]
        row = format_html(
            "<tr>{}</tr>",
            format_html_join("", "{}", ((cell,) for cell in items_for_result(listed, asset, None))),
        )
        busy = getattr(asset, "mediaopt_busy", False)
        return HttpResponse(row, status=200 if busy else STOP_POLLING)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        asset_id = _asset_id(object_id)
        if asset_id is not None:
            item = JobItem.objects.active_for_asset(asset_id).select_related("job").first()
            extra_context["panel"] = self.panel_context(request, asset_id, item=item)
            may_regenerate = may_run(request)
            if may_regenerate and self.has_change_permission(request):
                extra_context["regenerate_url"] = self.view_url("regenerate", asset_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def panel_context(
        self, request: HttpRequest, asset_id: int, *, item: JobItem | None, **extra: Any
    ) -> dict[str, Any]:
        """What the job panel shows: an active item polls; otherwise it is quiet."""
        panel: dict[str, Any] = {
            "state": "idle",
            "item": item,
            "poll_url": self.view_url("job_panel", asset_id),
            "regenerate_url": self.view_url("regenerate", asset_id),
            "change_url": self.view_url("change", asset_id),
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
        if not (self.has_change_permission(request, asset) and may_run(request)):
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
            return HttpResponseRedirect(_back_to(request) or self.view_url("change", asset.pk))
        # An HTMX click: answer with the panel, which polls while the image has an active
        # item (ours, or the job that already held the image).
        item = JobItem.objects.active_for_asset(asset.pk).select_related("job").first()
        panel = self.panel_context(request, asset.pk, item=item)
        if result.refused:
            panel.update(state="refused", message=message)
        elif not result.started:
            panel["notice"] = message
        return TemplateResponse(request, self.panel_template, {"panel": panel})

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
            return TemplateResponse(request, self.panel_template, {"panel": panel})
        context = page_context(
            self,
            request,
            title="Regenerate metadata?",
            obj=asset,
            original=asset,
            panel=panel,
        )
        return TemplateResponse(request, self.confirm_template, context)

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
            response = TemplateResponse(request, self.panel_template, {"panel": panel})
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
                context["panel"]["unsaved"] = [FIELD_LABELS[name] for name in edited]
            else:
                context["adminform"] = self.metadata_admin_form(request, asset)
            context["inline_admin_formsets"] = self.history_formsets(request, asset)
        response = TemplateResponse(request, self.panel_update_template, context)
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


class BusyRowsChangeList(ChangeList):
    """The list with each image marked busy while a job holds it: a subquery of the list's
    own query, so the page costs no query more, however many rows are busy."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        listed = super().get_queryset(request, exclude_parameters)
        return listed.annotate(
            mediaopt_busy=Exists(JobItem.objects.active().filter(asset_id=OuterRef("pk")))
        )


def _back_to(request: HttpRequest) -> str | None:
    """The page the button was on (the list, with its filters), if it is one of ours."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
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
