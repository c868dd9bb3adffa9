"""Undoing a job from its page: what the undo would do, to confirm, then the undo job.
Only for those who may change images' metadata."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.utils.html import format_html

from mediaopt.library.admin import page_context
from mediaopt.library.fields import (
    FIELD_LABELS,
)
from mediaopt.library.models import MediaAsset
from metadata import undo
from metadata.admin.common import (
    UNDO_PERMISSION,
    job_link,
)
from metadata.models import (
    JobKind,
    JobState,
    RegenerationJob,
)


def field_labels(names: list[str] | tuple[str, ...]) -> list[str]:
    """What an undo names: the five fields, and the decorative flag it also takes back."""
    return [FIELD_LABELS.get(name, name) for name in names]


class UndoMixin:
    """For RegenerationJobAdmin: the Undo button, its confirmation and the undo's result."""

    undo_template = "admin/metadata/regenerationjob/undo_confirmation.html"

    def may_undo(self, request: HttpRequest) -> bool:
        return request.user.has_perm(UNDO_PERMISSION)

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
        context = page_context(
            self,
            request,
            title=f"Undo job #{job.pk}?",
            original=job,
            preview=preview,
            rows=rows,
            rows_not_shown=preview.changed_since - len(rows),
            # The latest undo of this job when the page was shown: a second POST of the
            # same page finds a newer one and makes nothing (confirming twice, one undo).
            seen_undo=latest.pk if latest is not None else "",
            undo_url=self.job_url("undo", job.pk),
            change_url=self.job_url("change", job.pk),
            has_view_permission=True,
        )
        return TemplateResponse(request, self.undo_template, context)

    def undo_confirmed(self, request: HttpRequest, job: RegenerationJob) -> HttpResponse:
        latest = undo.latest_undo(job)
        if latest is not None and str(latest.pk) != request.POST.get("seen_undo", ""):
            message = format_html("This undo was already confirmed: {}.", job_link(latest))
            self.message_user(request, message, messages.INFO)
            return HttpResponseRedirect(self.job_url("change", latest.pk))
        try:
            started = undo.start(
                job=job, actor=request.user, override=request.POST.get("override") == "on"
            )
        except undo.CannotUndo as error:
            self.message_user(request, str(error), messages.WARNING)
            return HttpResponseRedirect(self.job_url("change", job.pk))
        count = started.job.items_total
        message = format_html(
            "Undoing job #{} on {} image{} — {}. It costs no credits.",
            job.pk,
            f"{count:,}",
            "" if count == 1 else "s",
            job_link(started.job),
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
