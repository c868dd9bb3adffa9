"""Proposals: kept for a person, approved through the one writer of metadata, undoable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from mediaopt.library.fields import Source
from metadata import proposals, revisions
from metadata.models import (
    MetadataRevision,
    Proposal,
    ProposalReason,
    ProposalState,
    RevisionKind,
)
from metadata.strategies import FieldChange, Plan
from tests.revision_builders import finished_job, hand_edit, imported

pytestmark = pytest.mark.django_db


def propose(asset, job=None, *, decorative=None, **values):
    asset.refresh_from_db()
    return proposals.propose(
        asset=asset,
        plan=Plan(
            changes={name: FieldChange(value, Source.AI) for name, value in values.items()},
            is_decorative=decorative,
        ),
        based_on_revision_id=asset.current_revision_id,
        reason=ProposalReason.REVIEW,
        job=job,
        provider="openai",
        model="gpt-4o-mini",
        language="de",
        findings=[{"field": "alt_text", "code": "alt.length", "level": "warning"}],
    )


@pytest.fixture
def reviewer():
    return User.objects.create_user("reviewer")


def test_a_proposal_leaves_the_image_as_it_was():
    (asset,) = imported(1, title="Embedded title")
    before = asset.current_revision_id
    proposal = propose(asset, alt_text="Ein Hund", title="Hund")
    asset.refresh_from_db()
    assert asset.current_revision_id == before and asset.alt_text == ""
    assert asset.title == "Embedded title"
    assert proposal.state == ProposalState.PENDING
    assert proposal.changes["alt_text"] == {"value": "Ein Hund", "source": Source.AI}


def test_a_newer_proposal_supersedes_the_waiting_one():
    (asset,) = imported(1)
    first = propose(asset, alt_text="First")
    second = propose(asset, alt_text="Second")
    first.refresh_from_db()
    assert first.state == ProposalState.SUPERSEDED
    assert list(Proposal.objects.pending()) == [second]


def test_approving_writes_one_ai_revision_with_the_model_job_and_findings(reviewer):
    (asset,) = imported(1)
    job = finished_job()
    proposal = propose(asset, job, alt_text="Ein Hund auf dem Sofa")
    approval = proposals.approve(proposal=proposal, actor=reviewer)
    asset.refresh_from_db()
    revision = approval.revision
    assert asset.alt_text == "Ein Hund auf dem Sofa" and asset.alt_text_source == Source.AI
    assert asset.current_revision_id == revision.pk
    assert (revision.kind, revision.model, revision.job_id) == (
        RevisionKind.GENERATED,
        "gpt-4o-mini",
        job.pk,
    )
    assert revision.language == "de" and revision.findings[0]["code"] == "alt.length"
    assert revision.actor == reviewer and approval.conflicts == ()
    proposal.refresh_from_db()
    assert proposal.state == ProposalState.APPROVED and proposal.revision_id == revision.pk


def test_an_edited_field_is_approved_as_manual(reviewer):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="A dgo", title="Dog")
    proposals.approve(proposal=proposal, actor=reviewer, edited={"alt_text": "A dog"})
    asset.refresh_from_db()
    assert (asset.alt_text, asset.alt_text_source) == ("A dog", Source.MANUAL)
    assert (asset.title, asset.title_source) == ("Dog", Source.AI)


def test_a_field_edited_since_the_proposal_is_a_conflict_kept_unless_overridden(reviewer):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Proposed alt", title="Proposed title")
    hand_edit(asset, alt_text="Typed by hand")
    approval = proposals.approve(proposal=proposal, actor=reviewer)
    asset.refresh_from_db()
    assert approval.conflicts == ("alt_text",) and not approval.overridden
    assert asset.alt_text == "Typed by hand" and asset.title == "Proposed title"

    (other,) = imported(1, start=5)
    forced = propose(other, alt_text="Proposed alt")
    hand_edit(other, alt_text="Typed by hand")
    approval = proposals.approve(proposal=forced, actor=reviewer, override=True)
    other.refresh_from_db()
    assert approval.overridden and other.alt_text == "Proposed alt"


def test_rejecting_writes_no_revision_and_records_who_and_why(reviewer):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Wrong")
    revisions_before = MetadataRevision.objects.count()
    proposals.reject(proposal=proposal, actor=reviewer, note="Not a cat")
    proposal.refresh_from_db()
    assert proposal.state == ProposalState.REJECTED
    assert (proposal.decided_by, proposal.note) == (reviewer, "Not a cat")
    assert MetadataRevision.objects.count() == revisions_before


def test_a_decided_proposal_cannot_be_decided_again(reviewer):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Once")
    proposals.approve(proposal=proposal, actor=reviewer)
    with pytest.raises(proposals.NotPending):
        proposals.approve(proposal=proposal, actor=reviewer)
    with pytest.raises(proposals.NotPending):
        proposals.reject(proposal=proposal, actor=reviewer)


def test_confirming_decorative_sets_the_flag_and_empties_the_alt_on_purpose(reviewer):
    (asset,) = imported(1)
    revisions.apply_manual(
        asset=asset,
        values={**asset.values(), "alt_text": "Blue swirl"},
        is_decorative=False,
        changed_fields=["alt_text"],
        actor=reviewer,
        based_on_revision_id=asset.current_revision_id,
    )
    asset.refresh_from_db()
    proposal = proposals.propose(
        asset=asset,
        plan=Plan(changes={"alt_text": FieldChange("", Source.NONE)}, is_decorative=True),
        based_on_revision_id=asset.current_revision_id,
        reason=ProposalReason.DECORATIVE,
    )
    proposals.approve(proposal=proposal, actor=reviewer, override=True)
    asset.refresh_from_db()
    assert asset.is_decorative and asset.alt_text == ""


def test_undoing_the_job_takes_back_what_was_approved_from_it(reviewer):
    (asset,) = imported(1, title="Embedded")
    job = finished_job()
    proposals.approve(proposal=propose(asset, job, title="Approved"), actor=reviewer)
    revisions.undo_asset(asset_id=asset.pk, job=job, override=False)
    asset.refresh_from_db()
    assert (asset.title, asset.title_source) == ("Embedded", Source.EMBEDDED)
