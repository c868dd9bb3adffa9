"""The bulk action, a sibling of Django's delete_selected: a permission-gated action, a
confirmation page, a message, back to the changelist. But the selection stays
server-side as a draft job (bulk.py) and the page posts only the draft's id and the
options. "Regenerate all" on the settings page drafts the same way."""

from __future__ import annotations

from django.contrib import admin, messages
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
from django.urls import URLPattern, reverse
from django.utils.html import format_html

from billing import gate
from billing.models import Account
from mediaopt.library.admin import admin_route, page_context
from metadata import bulk, status
from metadata.admin.common import (
    job_link,
    may_run,
)
from metadata.forms import BulkOptionsForm
from metadata.models import (
    JobKind,
    JobState,
    RegenerationJob,
    Settings,
)


class BulkActionMixin:
    """For LibraryAdmin: the action "Regenerate metadata with AI" and its confirmation."""

    bulk_template = "admin/mediaopt/mediaasset/regenerate_bulk.html"
    actions = ["regenerate_with_ai"]

    def bulk_urls(self) -> list[URLPattern]:
        return [
            admin_route(self, "trial/<int:job_id>/next/", self.after_trial_view, "after_trial"),
            admin_route(
                self, "regenerate-bulk/<int:job_id>/", self.regenerate_bulk_view, "regenerate_bulk"
            ),
            admin_route(self, "regenerate-all/", self.regenerate_all_view, "regenerate_all"),
        ]

    def has_run_regeneration_permission(self, request: HttpRequest) -> bool:
        # The name Django's action machinery asks for, from permissions=["run_regeneration"].
        return may_run(request)

    @admin.action(permissions=["run_regeneration"], description="Regenerate metadata with AI")
    def regenerate_with_ai(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        if request.POST.get("select_across") == "1":
            # Every page: keep the changelist's filter, not thousands of ids.
            job = bulk.draft_bulk(actor=request.user, filter_params=dict(request.GET.lists()))
        else:
            try:
                job = bulk.draft_bulk(
                    actor=request.user, asset_ids=list(queryset.values_list("pk", flat=True))
                )
            except bulk.ScopeError as error:
                self.message_user(request, str(error), messages.ERROR)
                return HttpResponseRedirect(request.get_full_path())
        return HttpResponseRedirect(self.view_url("regenerate_bulk", job.pk))

    def regenerate_all_view(self, request: HttpRequest) -> HttpResponse:
        """POST from the settings page: a draft over every image, or those missing alt text."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_run(request):
            raise PermissionDenied
        scope = request.POST.get("scope", bulk.ALL)
        if scope not in bulk.NAMED_SCOPES:
            raise Http404("No such scope.")
        job = bulk.draft_bulk(
            actor=request.user, missing_alt_text_only=scope == bulk.MISSING_ALT_TEXT
        )
        return HttpResponseRedirect(self.view_url("regenerate_bulk", job.pk))

    def after_trial_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """POST from the review screen after a trial: "run the remaining" (a draft of the
        rest, same options) or "change the settings and try again" (a new draft of the
        same selection); both lead to the confirmation page, with its estimate."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_run(request):
            raise PermissionDenied
        trial = RegenerationJob.objects.filter(pk=job_id, kind=JobKind.BULK).first()
        if trial is None or not (trial.options or {}).get("trial"):
            raise Http404("No such trial.")
        if request.POST.get("next") == "rest":
            draft = bulk.run_remaining(trial=trial, actor=request.user)
        else:
            draft = bulk.try_again(trial=trial, actor=request.user)
        return HttpResponseRedirect(self.view_url("regenerate_bulk", draft.pk))

    def regenerate_bulk_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """GET: the confirmation page for a draft. POST "_preview": the same page with the
        chosen options; POST "_confirm" or "_try_first": bulk.confirm, then the changelist."""
        if not may_run(request):
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
            return HttpResponseRedirect(self.view_url("changelist"))
        row = Settings.objects.current()
        form = BulkOptionsForm(
            request.POST if request.method == "POST" else None, row=row, stored=job.options
        )
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
                if result.started and result.job.options.get("trial"):
                    # The trial's results wait on the review screen, with what comes next.
                    return HttpResponseRedirect(review_url(result.job))
                if result.preparing:
                    # Its page counts the items as the task adds them ("Preparing N of M").
                    return HttpResponseRedirect(job_url(result.job))
                return HttpResponseRedirect(self.view_url("changelist"))
            options = form.options() if form.is_bound and form.is_valid() else None
            look = bulk.preview(job=job, options=options or bulk.BulkOptions.defaults(row))
        except bulk.ScopeError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(self.view_url("changelist"))
        context = page_context(
            self,
            request,
            # The heading says what the run will do: without AI, it does not promise it.
            title=(
                "Regenerate metadata without AI"
                if look.decision.mode == gate.Mode.HEURISTIC
                else "Regenerate metadata with AI"
            ),
            job=job,
            scope=bulk.describe_scope(job),
            form=form,
            preview=look,
            step=status.next_step(
                decision=look.decision,
                account=job.account or Account.objects.current(),
                user=request.user,
            )
            if look.refused
            else None,
            try_first=bulk.TRY_FIRST,
        )
        return TemplateResponse(request, self.bulk_template, context)


def confirmation_message(result: bulk.Confirmation) -> tuple[str, int]:
    if result.already_confirmed:
        text = format_html("This selection was already confirmed: {}.", job_link(result.job))
        return text, messages.INFO
    if not result.started:
        return result.message, messages.WARNING
    noun = "image" if result.items == 1 else "images"
    if result.preparing:
        text = format_html(
            "Preparing {} {} — {}: it starts once they are all added.",
            f"{result.items:,}",
            noun,
            job_link(result.job),
        )
        return text, messages.SUCCESS
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
    if result.job.options.get("trial"):
        text = format_html(
            "{} A trial: their results wait for your review below, then you can run the rest.",
            text,
        )
    return text, messages.SUCCESS


def job_url(job: RegenerationJob) -> str:
    return reverse("admin:metadata_regenerationjob_change", args=[job.pk])


def review_url(job: RegenerationJob) -> str:
    return f"{reverse('admin:metadata_proposal_changelist')}?job={job.pk}"
