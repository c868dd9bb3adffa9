"""The review screen in Chromium: approve one, edit then approve one, reject one, the keys
(j/k, a, e, r), approve the rest with one click, the library shows the new values; the
look at 1366x768 and axe-core's verdict."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django_q.conf import Conf
from playwright.sync_api import Page, expect

from mediaopt.library import ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import intake, proposals
from metadata.models import Proposal, ProposalReason, ProposalState
from metadata.strategies import FieldChange, Plan
from tests import factories
from tests.browser.conftest import PASSWORD, log_in, screenshot
from tests.revision_builders import finished_job

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

COLORS = ["navy", "teal", "orange", "purple", "olive", "maroon", "gray", "green"]
LENGTH = {
    "field": "alt_text",
    "code": "alt.length",
    "level": "error",
    "message": "Longer than 150 characters",
}


def waiting(job, n: int) -> list[Proposal]:
    """``n`` real images (files, thumbnails), each with a proposal of the job waiting; the
    last with a finding."""
    made = []
    for i in range(n):
        outcome = intake.import_file(
            source=factories.jpeg(320, 240, color=COLORS[i % len(COLORS)]),
            original_name=f"harbour-{i}.jpg",
        )
        assert outcome.status == ingest.IMPORTED, outcome.reason
        asset = outcome.asset
        asset.refresh_from_db()
        flagged = i == n - 1
        made.append(
            proposals.propose(
                asset=asset,
                plan=Plan(
                    changes={
                        "alt_text": FieldChange(f"Boat {i} moored in a quiet harbour", Source.AI),
                        "title": FieldChange(f"Harbour {i}", Source.AI),
                    }
                ),
                based_on_revision_id=asset.current_revision_id,
                reason=ProposalReason.FINDINGS if flagged else ProposalReason.REVIEW,
                job=job,
                findings=[LENGTH] if flagged else [],
                image_type="photo",
                provider="openai",
                model="gpt-4o-mini",
                language="en",
            )
        )
    return made


def card(page: Page, proposal: Proposal):
    return page.locator(f"#proposal-{proposal.pk}")


def serious(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])})"
        for v in results.response["violations"]
        if v.get("impact") in {"serious", "critical"}
    ]


def test_review_a_job_by_click_and_by_key(admin_page: Page):
    page = admin_page
    job = finished_job()
    a, b, c, d, e, f, g, flagged = waiting(job, 8)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(reverse("admin:metadata_proposal_changelist") + f"?job={job.pk}")
    expect(page.locator(".mediaopt-review-card")).to_have_count(8)
    expect(card(page, flagged).locator(".mediaopt-badge.is-error")).to_have_text("alt.length")
    screenshot(page, "review-screen")
    assert serious(page) == []
    # The admin's theme follows the system's unless toggled: the dark one must hold too.
    page.emulate_media(color_scheme="dark")
    screenshot(page, "review-screen-dark")
    assert serious(page) == []
    page.emulate_media(color_scheme="light")

    card(page, a).get_by_role("button", name="Approve").click()
    expect(card(page, a)).to_contain_text("Approved as revision 2")

    card(page, b).get_by_role("button", name="Edit").click()
    alt = card(page, b).get_by_label("Alt text")
    alt.fill("A red boat in the harbour at dawn")
    card(page, b).get_by_role("button", name="Approve").click()
    expect(card(page, b)).to_contain_text("Approved as revision 2")

    card(page, c).get_by_placeholder("Reason (optional)").fill("Names the wrong boat")
    card(page, c).get_by_role("button", name="Reject").click()
    expect(card(page, c)).to_contain_text("Rejected; the image keeps its values")

    # The keys: the swapped card C keeps the focus; j moves to D, a approves it.
    expect(card(page, c)).to_be_focused()
    page.keyboard.press("j")
    expect(card(page, d)).to_be_focused()
    page.keyboard.press("k")
    expect(card(page, c)).to_be_focused()
    page.keyboard.press("j")
    page.keyboard.press("a")
    expect(card(page, d)).to_contain_text("Approved as revision 2")
    expect(card(page, d)).to_be_focused()
    page.keyboard.press("j")
    expect(card(page, e)).to_be_focused()
    page.keyboard.press("e")
    field = card(page, e).get_by_label("Alt text")
    expect(field).to_be_focused()
    # Typing into the form is text, not shortcuts.
    page.keyboard.type(" aj")
    expect(field).to_have_value(f"Boat {4} moored in a quiet harbour aj")
    card(page, e).get_by_role("button", name="Cancel").click()
    expect(card(page, e)).to_be_focused()
    page.keyboard.press("r")
    expect(card(page, e)).to_contain_text("Rejected")

    page.get_by_role("button", name=f"Approve all without findings in job #{job.pk}").click()
    expect(page.locator(".messagelist")).to_contain_text(
        "Approved 2 without findings; 1 with findings wait for you"
    )
    expect(page.locator(".mediaopt-review-card")).to_have_count(1)

    states = dict(Proposal.objects.values_list("pk", "state"))
    assert [states[p.pk] for p in (a, b, c, d, e, f, g, flagged)] == [
        ProposalState.APPROVED,
        ProposalState.APPROVED,
        ProposalState.REJECTED,
        ProposalState.APPROVED,
        ProposalState.REJECTED,
        ProposalState.APPROVED,
        ProposalState.APPROVED,
        ProposalState.PENDING,
    ]

    page.goto(reverse("admin:mediaopt_mediaasset_changelist"))
    listing = page.locator("#result_list")
    expect(listing).to_contain_text("Boat 0 moored in a quiet harbour")
    expect(listing).to_contain_text("A red boat in the harbour at dawn")
    expect(listing).to_contain_text("Boat 6 moored in a quiet harbour")
    expect(listing).not_to_contain_text("Boat 2 moored")
    page.goto(reverse("admin:mediaopt_mediaasset_changelist") + "?needs_review=yes")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert MediaAsset.objects.get(pk=c.asset_id).alt_text == ""


def test_a_viewer_reads_the_screen_without_buttons(page: Page, superuser):
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_mediaasset"))
    (proposal,) = waiting(finished_job(), 1)
    log_in(page, viewer)
    page.goto(reverse("admin:metadata_proposal_changelist"))
    expect(card(page, proposal)).to_contain_text("Boat 0 moored")
    expect(card(page, proposal).get_by_role("button")).to_have_count(0)
    expect(page.get_by_role("button", name="Approve all without findings")).to_have_count(0)
    assert serious(page) == []


def test_a_review_mode_job_from_the_confirmation_page_waits_then_lands(
    admin_page: Page, fake_openai_settings, monkeypatch
):
    page = admin_page
    page.set_viewport_size({"width": 1366, "height": 768})
    monkeypatch.setattr(Conf, "SYNC", True)  # the job runs in the live server's thread
    for index, color in enumerate(("teal", "olive")):
        intake.import_file(
            source=factories.jpeg(160, 120, color=color), original_name=f"IMG_00{index}.jpg"
        )
    page.goto(reverse("admin:mediaopt_mediaasset_changelist"))
    page.locator("#action-toggle").check()
    page.locator("select[name='action']").select_option(label="Regenerate metadata with AI")
    page.locator("button[name='index']").click()
    page.get_by_label("Let me review the results before they are written").check()
    page.get_by_role("button", name="Yes, regenerate").click()

    # Nothing landed: the results wait for review.
    assert not MediaAsset.objects.exclude(alt_text="").exists()
    job = Proposal.objects.first().job
    page.goto(reverse("admin:metadata_proposal_changelist") + f"?job={job.pk}")
    expect(page.locator(".mediaopt-review-card")).to_have_count(2)
    page.get_by_role("button", name=f"Approve all without findings in job #{job.pk}").click()
    expect(page.locator(".mediaopt-review-card")).to_have_count(0)
    page.goto(reverse("admin:mediaopt_mediaasset_changelist"))
    expect(page.locator("#result_list")).to_contain_text("scene with a")
