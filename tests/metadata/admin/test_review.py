"""The review screen through the test client: cards, the per-card endpoints over htmx,
the page's actions, the permission rule (every denial changes nothing), and query counts
that stay flat from 20 to 10,000 waiting proposals."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import library_filters, proposals, review
from metadata.models import (
    JobKind,
    MetadataRevision,
    Proposal,
    ProposalReason,
    ProposalState,
    RegenerationJob,
)
from metadata.strategies import FieldChange, Plan
from tests.factories import bare_assets
from tests.revision_builders import finished_job, hand_edit, imported

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

PASSWORD = "a-long-test-password"
SCREEN = "admin:metadata_proposal_changelist"
LENGTH = {"field": "alt_text", "code": "alt.length", "level": "error", "message": "Too long"}
HTMX = {"HTTP_HX_REQUEST": "true"}


def url(view: str, proposal: Proposal) -> str:
    return reverse(f"admin:metadata_proposal_{view}", args=[proposal.pk])


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def propose(asset, job=None, *, findings=(), **values) -> Proposal:
    asset.refresh_from_db()
    return proposals.propose(
        asset=asset,
        plan=Plan(changes={name: FieldChange(v, Source.AI) for name, v in values.items()}),
        based_on_revision_id=asset.current_revision_id,
        reason=ProposalReason.FINDINGS if findings else ProposalReason.REVIEW,
        job=job,
        findings=list(findings),
        image_type="photo",
        provider="openai",
        model="gpt-4o-mini",
        language="en",
    )


@pytest.fixture
def reviewer_client(client):
    client.force_login(staff("reviewer", "view_mediaasset", "change_mediaasset"))
    return client


@pytest.fixture
def viewer_client(client):
    client.force_login(staff("viewer", "view_mediaasset"))
    return client


def test_the_screen_shows_each_card_current_beside_proposed_escaped(reviewer_client):
    (asset,) = imported(1, alt_text="A dog on a sofa")
    job = finished_job()
    propose(asset, job, alt_text='A brown dog <script>alert("x")</script>', findings=[LENGTH])
    response = reviewer_client.get(reverse(SCREEN))
    assert response.status_code == 200
    html = response.content.decode()
    assert "A dog <del>on a sofa</del>" in html and "A<ins> brown</ins> dog" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert 'class="mediaopt-badge is-error"' in html and "alt.length" in html
    assert "gpt-4o-mini" in html and f"job #{job.pk}" in html
    assert "Approve all without findings" in html and 'data-key="a"' in html
    assert "review.js" in html and "<style" not in html


def test_an_outdated_proposal_says_so(reviewer_client):
    (asset,) = imported(1)
    propose(asset, alt_text="Proposed")
    hand_edit(asset, alt_text="Typed by hand")
    html = reviewer_client.get(reverse(SCREEN)).content.decode()
    assert "Outdated:" in html and "alt text changed since" in html


def test_filters_and_the_next_page(reviewer_client):
    job = finished_job()
    assets = imported(25)
    made = [propose(asset, job, alt_text=f"Text {i}") for i, asset in enumerate(assets)]
    first = reviewer_client.get(reverse(SCREEN), {"job": job.pk})
    assert first.context["page"].next_after_id == made[19].pk
    assert f"after={made[19].pk}" in first.content.decode()
    second = reviewer_client.get(reverse(SCREEN), {"job": job.pk, "after": made[19].pk})
    assert [c.proposal.pk for c in second.context["page"].cards] == [p.pk for p in made[20:]]
    none = reviewer_client.get(reverse(SCREEN), {"job": job.pk + 1})
    assert none.context["page"].cards == ()
    assert "Nothing waits for review" in none.content.decode()


def test_approve_over_htmx_swaps_in_the_decided_card(reviewer_client):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="A red kite")
    response = reviewer_client.post(url("approve", proposal), **HTMX)
    assert response.status_code == 200
    assert "Approved as revision 2" in response.content.decode()
    asset.refresh_from_db()
    assert (asset.alt_text, asset.alt_text_source) == ("A red kite", Source.AI)


def test_edit_then_approve_writes_the_persons_wording_as_manual(reviewer_client):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="A red kite", title="Kite")
    form = reviewer_client.get(url("edit", proposal), **HTMX)
    assert form.status_code == 200 and 'name="alt_text"' in form.content.decode()
    reviewer_client.post(
        url("approve", proposal),
        {"edited": "1", "alt_text": "A red kite over a field", "title": "Kite"},
        **HTMX,
    )
    asset.refresh_from_db()
    assert (asset.alt_text, asset.alt_text_source) == ("A red kite over a field", Source.MANUAL)
    assert (asset.title, asset.title_source) == ("Kite", Source.AI)


def test_reject_keeps_the_values_and_records_the_reason(reviewer_client):
    (asset,) = imported(1, alt_text="Kept")
    proposal = propose(asset, alt_text="Worse")
    revisions_before = MetadataRevision.objects.count()
    response = reviewer_client.post(url("reject", proposal), {"note": "Too vague"}, **HTMX)
    assert "Rejected" in response.content.decode()
    proposal.refresh_from_db()
    asset.refresh_from_db()
    assert (proposal.state, proposal.note) == (ProposalState.REJECTED, "Too vague")
    assert asset.alt_text == "Kept" and MetadataRevision.objects.count() == revisions_before


def test_regenerate_starts_a_review_mode_single_job(client):
    client.force_login(staff("runner", "view_mediaasset", "change_mediaasset", "run_regeneration"))
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Meh")
    response = client.post(url("regenerate", proposal), **HTMX)
    assert response.status_code == 200
    job = RegenerationJob.objects.get(kind=JobKind.SINGLE)
    assert job.options["review"] is True
    assert f"Job #{job.pk} started" in response.content.decode()


def test_regenerate_needs_the_run_permission_too(reviewer_client):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Meh")
    assert "Regenerate</button>" not in reviewer_client.get(reverse(SCREEN)).content.decode()
    assert reviewer_client.post(url("regenerate", proposal)).status_code == 403
    assert not RegenerationJob.objects.filter(kind=JobKind.SINGLE).exists()


def test_the_page_actions_approve_clean_selected_and_reject_selected(reviewer_client):
    a, b, c, d = imported(4)
    clean = propose(a, alt_text="Clean")
    flagged = propose(b, alt_text="Flagged", findings=[LENGTH])
    chosen = propose(c, alt_text="Chosen", findings=[LENGTH])
    refused = propose(d, alt_text="Refused", findings=[LENGTH])
    decide = reverse("admin:metadata_proposal_decide")
    done = reviewer_client.post(decide, {"action": "approve_clean"}, follow=True)
    assert "Approved 1 without findings" in done.content.decode()
    reviewer_client.post(decide, {"action": "approve_selected", "ids": [chosen.pk]})
    reviewer_client.post(decide, {"action": "reject_selected", "ids": [refused.pk], "note": "Spam"})
    states = dict(Proposal.objects.values_list("pk", "state"))
    assert states == {
        clean.pk: ProposalState.APPROVED,
        flagged.pk: ProposalState.PENDING,
        chosen.pk: ProposalState.APPROVED,
        refused.pk: ProposalState.REJECTED,
    }


def test_a_viewer_sees_no_buttons_and_every_post_is_refused_changing_nothing(viewer_client):
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Proposed")
    page = viewer_client.get(reverse(SCREEN))
    html = page.content.decode()
    assert page.status_code == 200 and "Proposed" in html
    assert "<button" not in html.split('class="mediaopt-review-filters"')[1].split("</form>", 1)[1]
    assert "Approve all" not in html and 'data-key="a"' not in html
    assert viewer_client.get(url("edit", proposal)).status_code == 403
    revisions_before = MetadataRevision.objects.count()
    for view in ("approve", "reject", "regenerate"):
        assert viewer_client.post(url(view, proposal), {"note": "x"}, **HTMX).status_code == 403
    for action in ("approve_clean", "approve_selected", "reject_selected"):
        response = viewer_client.post(
            reverse("admin:metadata_proposal_decide"), {"action": action, "ids": [proposal.pk]}
        )
        assert response.status_code == 403
    proposal.refresh_from_db()
    asset.refresh_from_db()
    assert proposal.state == ProposalState.PENDING and asset.alt_text == ""
    assert MetadataRevision.objects.count() == revisions_before
    assert not RegenerationJob.objects.exists()


def test_without_view_permission_on_images_the_screen_is_refused(client):
    client.force_login(staff("outsider", "view_regenerationjob"))
    (asset,) = imported(1)
    proposal = propose(asset, alt_text="Proposed")
    assert client.get(reverse(SCREEN)).status_code == 403
    assert client.get(url("card", proposal)).status_code == 403


def waiting_rows(total: int, *, clean: int = 0, start: int = 100_000) -> list[Proposal]:
    """``total`` waiting proposals on file-less images, built in bulk; the last ``clean``
    of them without findings, the rest with one."""
    assets = bare_assets(total, start=start)
    rows = [
        Proposal(
            asset_id=asset.pk,
            changes={"alt_text": {"value": f"Alt {i}", "source": Source.AI}},
            reason=ProposalReason.REVIEW,
            findings=[] if i >= total - clean else [LENGTH],
            model="gpt-4o-mini",
            created_at=timezone.now(),
        )
        for i, asset in enumerate(assets)
    ]
    return Proposal.objects.bulk_create(rows, batch_size=1000)


def screen_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(SCREEN))
    assert response.status_code == 200 and len(response.context["page"].cards) == 20
    return len(captured)


def test_the_screen_costs_the_same_queries_at_20_and_10000_waiting(reviewer_client):
    waiting_rows(20)
    screen_queries(reviewer_client)  # the first view makes the settings row
    small = screen_queries(reviewer_client)
    waiting_rows(9_980, start=200_000)
    assert screen_queries(reviewer_client) == small
    # Session, user, the notices waiting for the user (messages of long jobs), settings,
    # jobs offered, the capped count, the page.
    assert small <= 9


def approve_clean_queries(actor) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as captured:
        done = review.approve_clean(actor=actor)
    return len(captured), done.approved


def test_approve_clean_costs_the_same_queries_at_20_and_10000_waiting():
    actor = User.objects.create_user("bulk-reviewer")
    waiting_rows(20, clean=20)
    small, approved = approve_clean_queries(actor)
    assert approved == 20
    # 10,000 waiting, of which the 20 clean ones come last: the scan past the others
    # costs batches of one query each, not a query per proposal.
    MediaAsset.objects.all().delete()
    waiting_rows(10_000, clean=20, start=200_000)
    large, approved = approve_clean_queries(actor)
    assert approved == 20
    assert large == small


def test_the_job_page_and_the_settings_page_link_to_what_waits(admin_client):
    job = finished_job()
    for asset in imported(3):
        propose(asset, job, alt_text="Proposed")
    job_page = admin_client.get(reverse("admin:metadata_regenerationjob_change", args=[job.pk]))
    assert f"?job={job.pk}" in job_page.content.decode()
    assert "Review 3 waiting" in job_page.content.decode()
    settings_page = admin_client.get(reverse("admin:metadata_settings_changelist"), follow=True)
    assert "Review 3 waiting" in settings_page.content.decode()


def test_the_job_page_has_no_review_link_when_nothing_waits(admin_client):
    job = finished_job()
    page = admin_client.get(reverse("admin:metadata_regenerationjob_change", args=[job.pk]))
    assert "waiting</a>" not in page.content.decode()


@pytest.mark.parametrize(
    "query", ["needs_review=yes", "needs_review=no", "needs_review=yes&q=photo"]
)
def test_the_needs_review_filter_replays_as_listed(admin_client, query):
    waiting, decided, untouched = imported(3)
    propose(waiting, alt_text="Waits")
    proposals.reject(proposal=propose(decided, alt_text="Refused"), actor=None)
    changelist = reverse("admin:mediaopt_mediaasset_changelist")
    response = admin_client.get(f"{changelist}?{query}")
    assert response.status_code == 200
    listed = set(response.context["cl"].queryset.values_list("pk", flat=True))
    assert set(library_filters.replay(query).values_list("pk", flat=True)) == listed
    expected = {waiting.pk} if query.startswith("needs_review=yes") else {decided.pk, untouched.pk}
    assert listed == expected
    assert library_filters.describe("needs_review=yes") == "all images needing review"


def test_with_nothing_waiting_the_bulk_actions_are_gone_and_the_screen_says_so(reviewer_client):
    html = reviewer_client.get(reverse(SCREEN)).content.decode()
    for button in ("Approve all without findings", "Approve selected", "Reject selected"):
        assert button not in html
    assert "Nothing waits for review, so there is nothing to approve or reject." in html
    library = reverse("admin:mediaopt_mediaasset_changelist")
    assert f'<a href="{library}">back to the library</a>' in html
    assert "mediaopt-review-filters" not in html and "Approving writes" not in html
    (asset,) = imported(1)
    propose(asset, alt_text="A red kite")
    html = reviewer_client.get(reverse(SCREEN)).content.decode()
    for button in ("Approve all without findings", "Approve selected", "Reject selected"):
        assert button in html


def test_filters_that_match_nothing_hide_the_bulk_actions_and_offer_all(reviewer_client):
    (asset,) = imported(1)
    job = finished_job()
    propose(asset, job, alt_text="A red kite")
    html = reviewer_client.get(reverse(SCREEN), {"job": job.pk + 1}).content.decode()
    assert "Approve selected" not in html
    assert "mediaopt-review-filters" in html  # the filters stay, to change them
    assert "Nothing waits for review with these filters, so there is nothing" in html
    assert f'<a href="{reverse(SCREEN)}">Show all proposals</a>' in html
