"""Proposals: results kept for a person to approve, edit or reject instead of written.

The only writer of proposals. A review-mode job proposes every result; an apply-mode job
proposes only what the quality checks stopped and decorative or complex verdicts. An
approval writes its revision through revisions.py, the only writer of metadata, so the
change is stale-guarded, undoable with its job and costs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from mediaopt.library.fields import EDITABLE_FIELDS, FIELDS, Source
from mediaopt.library.models import MediaAsset, MetadataFields
from metadata import revisions, undo_plan
from metadata.models import MetadataRevision, Proposal, ProposalState, RegenerationJob
from metadata.strategies import FieldChange, Plan


def propose(
    *,
    asset: MediaAsset,
    plan: Plan,
    based_on_revision_id: int | None,
    reason: str,
    job: RegenerationJob | None = None,
    findings: Sequence[Mapping] = (),
    image_type: str = "",
    provider: str = "",
    model: str = "",
    language: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> Proposal:
    """Keep a result for a person instead of writing it: the image's values do not change.

    An image has at most one proposal waiting: a newer one supersedes it.
    """
    with transaction.atomic():
        Proposal.objects.pending().filter(asset_id=asset.pk).update(
            state=ProposalState.SUPERSEDED, decided_at=timezone.now()
        )
        return Proposal.objects.create(
            asset_id=asset.pk,
            job=job,
            based_on_id=based_on_revision_id,
            changes={
                name: {"value": change.value, "source": change.source}
                for name, change in plan.changes.items()
            },
            is_decorative=plan.is_decorative,
            reason=reason,
            findings=list(findings),
            image_type=image_type,
            provider=provider,
            model=model,
            language=language,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


class NotPending(Exception):
    """The proposal was already approved, rejected or superseded."""


@dataclass(frozen=True)
class Approval:
    """What approving did: the revision written (None if nothing was left to change), and
    the fields changed since the proposal was made, kept unless overridden."""

    revision: MetadataRevision | None
    conflicts: tuple[str, ...]
    overridden: bool


def proposal_conflicts(proposal: Proposal, *, current: MetadataFields) -> tuple[str, ...]:
    """Fields the proposal would change that changed since it was made."""
    if proposal.based_on_id == current.current_revision_id:
        return ()
    before = proposal.based_on or undo_plan.empty_snapshot()
    names = [*proposal.changes, *(["is_decorative"] if proposal.is_decorative is not None else [])]
    return tuple(
        name
        for name in EDITABLE_FIELDS
        if name in names
        and undo_plan.field_state(before, name) != undo_plan.field_state(current, name)
    )


def approve(
    *,
    proposal: Proposal,
    actor,
    edited: Mapping[str, str] | None = None,
    override: bool = False,
) -> Approval:
    """Write the proposal as a normal revision (kind generated, with its job and model)
    through revisions.py, so an undo of the job takes it back like any other change.

    ``edited``: the person's own wording of some fields, written as manual. A field
    changed since the proposal was made is a conflict: kept, unless ``override``. Costs
    nothing: the call was paid for when it was made.
    """
    edited = dict(edited or {})
    with transaction.atomic():
        locked = Proposal.objects.select_for_update().filter(pk=proposal.pk).first()
        if locked is None or locked.state != ProposalState.PENDING:
            raise NotPending(f"Proposal {proposal.pk} is no longer waiting for review.")
        # Planned against the image as it is now, under its row lock: the write below is
        # based on this very revision, so it cannot be stale.
        asset = MediaAsset.objects.select_for_update(of=("self",)).get(pk=locked.asset_id)
        conflicts = proposal_conflicts(locked, current=asset)
        kept = set() if override else set(conflicts)
        changes: dict[str, FieldChange] = {}
        for name in FIELDS:
            if name in kept:
                continue
            if name in edited:
                value = edited[name]
                changes[name] = FieldChange(value, Source.MANUAL if value else Source.NONE)
            elif name in locked.changes:
                change = locked.changes[name]
                changes[name] = FieldChange(change["value"], change["source"])
        revision = revisions.apply_plan(
            asset=asset,
            plan=Plan(
                changes=changes,
                is_decorative=None if "is_decorative" in kept else locked.is_decorative,
            ),
            based_on_revision_id=asset.current_revision_id,
            actor=actor,
            job=locked.job,
            provider=locked.provider,
            model=locked.model,
            prompt_tokens=locked.prompt_tokens,
            completion_tokens=locked.completion_tokens,
            language=locked.language,
            findings=locked.findings,
        )
        Proposal.objects.filter(pk=locked.pk).update(
            state=ProposalState.APPROVED,
            decided_by=actor,
            decided_at=timezone.now(),
            revision=revision,
        )
    proposal.refresh_from_db()
    return Approval(revision=revision, conflicts=conflicts, overridden=override and bool(conflicts))


def reject(*, proposal: Proposal, actor, note: str = "") -> None:
    """The image keeps its values; who rejected and why is kept. No revision is written."""
    rejected = (
        Proposal.objects.pending()
        .filter(pk=proposal.pk)
        .update(
            state=ProposalState.REJECTED, decided_by=actor, decided_at=timezone.now(), note=note
        )
    )
    if not rejected:
        raise NotPending(f"Proposal {proposal.pk} is no longer waiting for review.")
    proposal.refresh_from_db()


def expire(*, days: int, now=None) -> int:
    """Mark proposals waiting longer than ``days`` (the revision retention) superseded:
    an answer that old was made for an image that has likely moved on. How many."""
    if days < 1:
        raise ValueError("Proposals wait at least one day.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return (
        Proposal.objects.pending()
        .filter(created_at__lt=cutoff)
        .update(state=ProposalState.SUPERSEDED, decided_at=timezone.now())
    )
