"""The review screen: what waits for a person, as a grid of cards (the admin's list of
proposals), each approved, edited then approved, rejected or regenerated in place over
htmx; and the page's Approve all without findings / selected, Reject selected.

Seeing it needs view permission on images; deciding needs change permission on images
(regenerating also the permission to start paid work). The domain is metadata/review.py
and proposals.py: this module reads the request, checks permissions and renders.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from mediaopt.library.admin import page_context
from mediaopt.library.fields import FIELD_LABELS, FIELDS
from metadata import bulk, proposals, review, single
from metadata.admin.common import int_or_none, may_run
from metadata.models import (
    Proposal,
    ProposalReason,
    ProposalState,
    RegenerationJob,
    Settings,
)
from metadata.providers.prompt import IMAGE_TYPES

VIEW_PERMISSION = "mediaopt.view_mediaasset"
# Approving writes an image's metadata: whoever may edit images may decide, no one else.
DECIDE_PERMISSION = "mediaopt.change_mediaasset"
# A reviewer's reason is a note, not an essay.
NOTE_MAX = 1000


def may_view(request: HttpRequest) -> bool:
    return request.user.has_perm(VIEW_PERMISSION) or request.user.has_perm(DECIDE_PERMISSION)


def may_decide(request: HttpRequest) -> bool:
    return request.user.has_perm(DECIDE_PERMISSION)


@admin.register(Proposal)
class ProposalAdmin(admin.ModelAdmin):
    """The list of proposals is the review screen; a proposal has no form of its own (it
    is decided, never edited as a row)."""

    review_template = "admin/metadata/proposal/review.html"
    card_template = "admin/metadata/proposal/card.html"
    edit_template = "admin/metadata/proposal/card_edit.html"

    # -- permissions: the images', not the proposal model's own ---------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return may_view(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_view(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return may_decide(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # -- URLs -------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", wrap(self.changelist_view), name=f"{name}_changelist"),
            path("decide/", wrap(self.decide_view), name=f"{name}_decide"),
            path("<int:object_id>/card/", wrap(self.card_view), name=f"{name}_card"),
            path("<int:object_id>/edit/", wrap(self.edit_view), name=f"{name}_edit"),
            path("<int:object_id>/approve/", wrap(self.approve_view), name=f"{name}_approve"),
            path("<int:object_id>/reject/", wrap(self.reject_view), name=f"{name}_reject"),
            path(
                "<int:object_id>/regenerate/",
                wrap(self.regenerate_view),
                name=f"{name}_regenerate",
            ),
        ]

    # -- the screen -------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        if not may_view(request):
            raise PermissionDenied
        filters = filters_from(request.GET)
        after_id = int_or_none(request.GET.get("after"))
        page = review.review_page(filters=filters, after_id=after_id)
        waiting = review.capped_count(review.waiting(filters))
        query = filter_query(filters)
        context = page_context(
            self,
            request,
            title="Review proposals",
            page=page,
            filters=filters,
            waiting=waiting,
            waiting_capped=waiting > review.COUNT_CAP,
            count_cap=review.COUNT_CAP,
            can_decide=may_decide(request),
            can_regenerate=may_decide(request) and may_run(request),
            job_choices=job_choices(filters.job_id),
            field_choices=review.field_choices(),
            image_types=IMAGE_TYPES,
            reasons=ProposalReason.choices,
            filter_query=query,
            first_url=self.screen_url(query),
            next_url=(
                self.screen_url(query, after=page.next_after_id) if page.next_after_id else ""
            ),
            this_url=request.get_full_path(),
            on_later_page=after_id is not None,
            trial=bulk.trial_of(filters.job_id),
            can_run=may_run(request),
            **(extra_context or {}),
        )
        return TemplateResponse(request, self.review_template, context)

    def screen_url(self, query: str, **extra: Any) -> str:
        url = reverse("admin:metadata_proposal_changelist", current_app=self.admin_site.name)
        parts = "&".join(part for part in (query, urlencode(extra) if extra else "") if part)
        return f"{url}?{parts}" if parts else url

    # -- one card ---------------------------------------------------------------------

    def card_response(
        self, request: HttpRequest, proposal: Proposal, *, notice: str = "", edit: bool = False
    ) -> HttpResponse:
        proposal = load(proposal.pk)
        context = {
            "card": review.card(proposal, setting_language=Settings.objects.current().language),
            "can_decide": may_decide(request),
            "can_regenerate": may_decide(request) and may_run(request),
            "notice": notice,
        }
        template = self.edit_template if edit else self.card_template
        return TemplateResponse(request, template, context)

    def card_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not may_view(request):
            raise PermissionDenied
        return self.card_response(request, load(object_id))

    def edit_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not may_decide(request):
            raise PermissionDenied
        proposal = load(object_id)
        if proposal.state != ProposalState.PENDING:
            return self.decided(request, proposal, "This proposal was decided meanwhile.")
        if not request.htmx:
            return HttpResponseRedirect(self.screen_url("") + f"#proposal-{proposal.pk}")
        return self.card_response(request, proposal, edit=True)

    def approve_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_decide(request):
            raise PermissionDenied
        proposal = load(object_id)
        edited = edited_values(proposal, request.POST) if request.POST.get("edited") else None
        try:
            approval = proposals.approve(proposal=proposal, actor=request.user, edited=edited)
        except proposals.NotPending:
            return self.decided(request, proposal, "This proposal was decided meanwhile.")
        if approval.conflicts:
            kept = ", ".join(FIELD_LABELS[name].lower() for name in approval.conflicts)
            notice = f"Approved; kept the {kept} changed on the image since."
        elif approval.revision is None:
            notice = "Approved; nothing was left to change."
        else:
            notice = f"Approved as revision {approval.revision.number}."
        return self.decided(request, proposal, notice)

    def reject_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_decide(request):
            raise PermissionDenied
        proposal = load(object_id)
        note = request.POST.get("note", "").strip()[:NOTE_MAX]
        try:
            proposals.reject(proposal=proposal, actor=request.user, note=note)
        except proposals.NotPending:
            return self.decided(request, proposal, "This proposal was decided meanwhile.")
        return self.decided(request, proposal, "Rejected; the image keeps its values.")

    def regenerate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (may_decide(request) and may_run(request)):
            raise PermissionDenied
        proposal = load(object_id)
        if proposal.state != ProposalState.PENDING:
            return self.decided(request, proposal, "This proposal was decided meanwhile.")
        started = single.request_regeneration(
            asset=proposal.asset, actor=request.user, replace_manual=False, review=True
        )
        if started.job is not None:
            notice = f"Job #{started.job.pk} started: its proposal will replace this one."
        elif started.busy_job_id is not None:
            notice = f"The image is busy in job #{started.busy_job_id}."
        else:
            notice = f"Not started: {started.refused}"
        return self.decided(request, proposal, notice)

    def decided(self, request: HttpRequest, proposal: Proposal, notice: str) -> HttpResponse:
        """The card again with what happened (htmx), or back to the screen."""
        if request.htmx:
            return self.card_response(request, proposal, notice=notice)
        self.message_user(request, notice, messages.INFO)
        return HttpResponseRedirect(back_url(request, self.screen_url("")))

    # -- the page's actions -----------------------------------------------------------

    def decide_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_decide(request):
            raise PermissionDenied
        action = request.POST.get("action", "")
        ids = [pk for pk in map(int_or_none, request.POST.getlist("ids")) if pk is not None]
        if action == "approve_clean":
            job_id = int_or_none(request.POST.get("job"))
            done = review.approve_clean(actor=request.user, job_id=job_id)
            text = f"Approved {done.approved} without findings"
            if done.outdated:
                text += f"; {done.outdated} left for you: the image changed since"
            if done.with_findings:
                text += f"; {done.with_findings} with findings wait for you"
        elif action == "approve_selected" and ids:
            done = review.approve_many(ids=ids, actor=request.user)
            text = f"Approved {done.approved} selected"
        elif action == "reject_selected" and ids:
            note = request.POST.get("note", "").strip()[:NOTE_MAX]
            done = review.reject_many(ids=ids, actor=request.user, note=note)
            text = f"Rejected {done.rejected} selected; those images keep their values"
        else:
            self.message_user(request, "Select proposals first.", messages.WARNING)
            return HttpResponseRedirect(back_url(request, self.screen_url("")))
        if done.not_pending and action != "approve_clean":
            text += f"; {done.not_pending} had been decided meanwhile"
        self.message_user(request, text + ".", messages.SUCCESS)
        return HttpResponseRedirect(back_url(request, self.screen_url("")))


def load(proposal_id: int) -> Proposal:
    proposal = (
        Proposal.objects.select_related("asset", "asset__current_revision", "based_on", "job")
        .filter(pk=proposal_id)
        .first()
    )
    if proposal is None:
        raise Http404("No such proposal.")
    return proposal


def filters_from(params: Any) -> review.Filters:
    return review.parse_filters(
        job=params.get("job", ""),
        code=params.get("code", ""),
        field_name=params.get("field", ""),
        image_type=params.get("image_type", ""),
        reason=params.get("reason", ""),
    )


def filter_query(filters: review.Filters) -> str:
    pairs = {
        "job": filters.job_id or "",
        "code": filters.code,
        "field": filters.field,
        "image_type": filters.image_type,
        "reason": filters.reason,
    }
    return urlencode({key: value for key, value in pairs.items() if value})


def edited_values(proposal: Proposal, data: Any) -> dict[str, str]:
    """The person's wording of the proposed fields, only where it differs from the
    proposal (an unchanged field keeps the model's value and source)."""
    edited = {}
    for name in FIELDS:
        if name not in proposal.changes or name not in data:
            continue
        value = str(data.get(name, "")).strip()
        if value != proposal.changes[name].get("value", ""):
            edited[name] = value
    return edited


def job_choices(chosen: int | None) -> list[tuple[int, str]]:
    """The newest jobs with proposals waiting (one query, bounded), and the chosen one."""
    jobs = list(
        RegenerationJob.objects.filter(
            Exists(Proposal.objects.pending().filter(job_id=OuterRef("pk")))
        )
        .only("pk", "kind")
        .order_by("-pk")[:10]
    )
    choices = [(job.pk, f"#{job.pk} {job.get_kind_display().lower()}") for job in jobs]
    if chosen is not None and chosen not in {pk for pk, _ in choices}:
        choices.append((chosen, f"#{chosen}"))
    return choices


def back_url(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback
