"""The review screen's domain: pages by key, filters, outdated proposals, approve-all
without findings, deciding many, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from mediaopt.library.fields import Source
from metadata import proposals, review
from metadata.models import MetadataRevision, Proposal, ProposalReason, ProposalState, Settings
from metadata.strategies import FieldChange, Plan
from tests.revision_builders import finished_job, hand_edit, imported

pytestmark = pytest.mark.django_db

LENGTH = {"field": "alt_text", "code": "alt.length", "level": "error", "message": "Too long"}


def propose(asset, job=None, *, findings=(), image_type="photo", decorative=None, **values):
    asset.refresh_from_db()
    return proposals.propose(
        asset=asset,
        plan=Plan(
            changes={name: FieldChange(value, Source.AI) for name, value in values.items()},
            is_decorative=decorative,
        ),
        based_on_revision_id=asset.current_revision_id,
        reason=ProposalReason.FINDINGS if findings else ProposalReason.REVIEW,
        job=job,
        findings=list(findings),
        image_type=image_type,
        provider="openai",
        model="gpt-4o-mini",
        language="en",
    )


@pytest.fixture
def reviewer():
    return User.objects.create_user("reviewer")


def test_a_page_shows_current_beside_proposed_with_the_words_that_differ():
    (asset,) = imported(1, alt_text="A dog on a sofa")
    propose(asset, alt_text="A brown dog on a sofa", findings=[LENGTH])
    (card,) = review.review_page().cards
    (alt,) = card.fields
    assert (alt.current, alt.proposed, alt.differs) == (
        "A dog on a sofa",
        "A brown dog on a sofa",
        True,
    )
    assert "<ins> brown</ins>" in alt.proposed_html and "<del>" not in alt.current_html
    assert alt.findings == (LENGTH,)
    assert not card.outdated and not card.clean


def test_model_text_is_escaped_in_the_diff():
    (asset,) = imported(1)
    propose(asset, alt_text='<img src=x onerror="alert(1)">')
    (alt,) = review.review_page().cards[0].fields
    assert "<img" not in alt.proposed_html and "&lt;img" in alt.proposed_html


def test_pages_follow_the_key_and_end():
    assets = imported(45)
    made = [propose(asset, alt_text=f"Text {i}").pk for i, asset in enumerate(assets)]
    first = review.review_page()
    second = review.review_page(after_id=first.next_after_id)
    third = review.review_page(after_id=second.next_after_id)
    shown = [c.proposal.pk for page in (first, second, third) for c in page.cards]
    assert shown == made
    assert len(first.cards) == 20 and len(third.cards) == 5
    assert third.next_after_id is None


def test_filters_narrow_by_job_code_field_image_type_and_reason():
    job = finished_job()
    a, b, c, d = imported(4)
    with_code = propose(a, job, alt_text="Alt", findings=[LENGTH])
    titled = propose(b, title="Title", image_type="chart")
    decorative = propose(c, alt_text="", decorative=True)
    other_job = propose(d, finished_job(), caption="Caption")

    def ids(**filters):
        page = review.review_page(filters=review.Filters(**filters))
        return [card.proposal.pk for card in page.cards]

    assert ids(job_id=job.pk) == [with_code.pk]
    assert ids(code="alt.length") == [with_code.pk]
    assert ids(code="alt.len") == []
    assert ids(field="title") == [titled.pk]
    assert ids(field="is_decorative") == [decorative.pk]
    assert ids(image_type="chart") == [titled.pk]
    assert ids(reason=ProposalReason.FINDINGS) == [with_code.pk]
    assert other_job.pk in ids()


def test_a_proposal_is_outdated_when_a_field_it_changes_was_edited_since():
    first, second = imported(2)
    propose(first, alt_text="Proposed")
    propose(second, alt_text="Proposed")
    hand_edit(first, alt_text="Typed by hand")
    hand_edit(second, title="Only the title")
    cards = {card.proposal.asset_id: card for card in review.review_page().cards}
    assert cards[first.pk].outdated and cards[first.pk].conflicts == ("alt_text",)
    assert not cards[second.pk].outdated


def test_approve_clean_approves_only_those_without_findings(reviewer):
    job = finished_job()
    clean, flagged, elsewhere = imported(3)
    good = propose(clean, job, alt_text="Good text")
    bad = propose(flagged, job, alt_text="x" * 200, findings=[LENGTH])
    other = propose(elsewhere, finished_job(), alt_text="Other job")
    decisions = review.approve_clean(actor=reviewer, job_id=job.pk)
    assert (decisions.approved, decisions.with_findings, decisions.ids) == (1, 1, (good.pk,))
    states = dict(Proposal.objects.values_list("pk", "state"))
    assert states[good.pk] == ProposalState.APPROVED
    assert states[bad.pk] == states[other.pk] == ProposalState.PENDING
    clean.refresh_from_db()
    flagged.refresh_from_db()
    assert clean.alt_text == "Good text" and flagged.alt_text == ""


def test_approve_clean_leaves_outdated_proposals_for_a_person(reviewer):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Proposed")
    hand_edit(asset, alt_text="Typed by hand")
    decisions = review.approve_clean(actor=reviewer)
    assert (decisions.approved, decisions.outdated) == (0, 1)
    proposal.refresh_from_db()
    assert proposal.state == ProposalState.PENDING


def test_approve_clean_dry_run_changes_nothing(reviewer):
    assets = imported(3)
    for asset in assets:
        propose(asset, alt_text="Clean")
    revisions_before = MetadataRevision.objects.count()
    decisions = review.approve_clean(actor=reviewer, dry_run=True)
    assert decisions.approved == 3
    assert Proposal.objects.pending().count() == 3
    assert MetadataRevision.objects.count() == revisions_before


def test_approve_clean_works_through_more_than_one_batch(reviewer, monkeypatch):
    monkeypatch.setattr(review, "BATCH_SIZE", 4)
    for asset in imported(10):
        propose(asset, alt_text="Clean")
    assert review.approve_clean(actor=reviewer).approved == 10
    assert not Proposal.objects.pending().exists()


def test_approve_and_reject_many_skip_what_was_decided_already(reviewer):
    a, b, c = imported(3)
    first, second, third = (propose(x, alt_text="Proposed") for x in (a, b, c))
    proposals.reject(proposal=third, actor=reviewer)
    approved = review.approve_many(ids=[first.pk, third.pk], actor=reviewer)
    assert (approved.approved, approved.not_pending) == (1, 1)
    rejected = review.reject_many(ids=[second.pk, first.pk], actor=reviewer, note="Too vague")
    assert (rejected.rejected, rejected.not_pending) == (1, 1)
    second.refresh_from_db()
    assert (second.state, second.note, second.decided_by) == (
        ProposalState.REJECTED,
        "Too vague",
        reviewer,
    )
    b.refresh_from_db()
    assert b.alt_text == ""


def test_expire_supersedes_only_proposals_older_than_the_retention():
    old, young = imported(2)
    stale = propose(old, alt_text="Old")
    fresh = propose(young, alt_text="Young")
    Proposal.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(days=31))
    assert proposals.expire(days=30) == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.state == ProposalState.SUPERSEDED and fresh.state == ProposalState.PENDING
    with pytest.raises(ValueError):
        proposals.expire(days=0)


def test_counts_stop_at_the_cap():
    for asset in imported(5):
        propose(asset, alt_text="Text")
    assert review.waiting_count(cap=3) == 4
    assert review.waiting_count() == 5


def test_parse_filters_ignores_what_it_does_not_know():
    filters = review.parse_filters(
        job="12", code=" alt.length ", field_name="nope", image_type="selfie", reason="x"
    )
    assert filters == review.Filters(job_id=12, code="alt.length")


def test_a_proposal_made_in_another_language_than_the_setting_says_so():
    Settings.objects.filter(pk=Settings.objects.current().pk).update(language="de")
    (asset,) = imported(1)
    propose(asset, alt_text="A dog")  # made in "en"
    (english,) = review.review_page().cards
    assert english.setting_language == "de"
    Settings.objects.update(language="en")
    assert review.review_page().cards[0].setting_language == ""
