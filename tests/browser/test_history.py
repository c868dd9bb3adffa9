"""An image's metadata history in Chromium: from the change page to the history, a
comparison of two revisions, and a restore confirmed with one field left out."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import Page, expect

from mediaopt.library import ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import intake, revisions
from metadata.models import JobKind, JobState, MetadataRevision, RegenerationJob, RevisionKind
from metadata.strategies import FieldChange, Plan
from tests import factories

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
]

# The admin's label ("Alt text:"), not the read-only "Alt text source" beside it.
ALT_TEXT = re.compile(r"^Alt text:?$")
TITLE = re.compile(r"^Title:?$")


def with_history(name: str) -> MediaAsset:
    """Revision 1 the import (nothing embedded), 2 a bulk job's AI text, 3 a hand edit."""
    outcome = intake.import_file(source=factories.jpeg(48, 36, color="navy"), original_name=name)
    assert outcome.status == ingest.IMPORTED, outcome.reason
    asset = outcome.asset
    job = RegenerationJob.objects.create(kind=JobKind.BULK, state=JobState.COMPLETED)
    revisions.apply_plan(
        asset=asset,
        plan=Plan(
            changes={
                "alt_text": FieldChange("Red boats at dawn", Source.AI),
                "title": FieldChange("Harbour at dawn", Source.AI),
            }
        ),
        based_on_revision_id=asset.current_revision_id,
        job=job,
        provider="openai",
        model="gpt-4o-mini",
    )
    revisions.apply_manual(
        asset=asset,
        values={**asset.values(), "alt_text": "Red fishing boats", "title": "Typed title"},
        is_decorative=False,
        changed_fields=["alt_text", "title"],
        actor=User.objects.get(username="admin"),
        based_on_revision_id=asset.current_revision_id,
    )
    asset.refresh_from_db()
    return asset


def change_path(asset: MediaAsset) -> str:
    return reverse("admin:mediaopt_mediaasset_change", args=[asset.pk])


def background(locator) -> str:
    return locator.evaluate("el => getComputedStyle(el).backgroundColor")


def test_compare_two_revisions_from_the_change_page(admin_page: Page):
    page = admin_page
    asset = with_history("harbour.jpg")

    page.goto(change_path(asset))
    page.locator(".object-tools").get_by_role("link", name="Metadata history").click()

    expect(page.locator("h1")).to_have_text("Metadata history")
    expect(page.locator("#revision-3 h2")).to_contain_text("Manual edit")
    expect(page.locator("#revision-2 h2")).to_contain_text("AI (gpt-4o-mini)")
    expect(page.locator("#revision-1 h2")).to_contain_text("Import")
    page.locator("#revision-2 input[name=from]").check()
    page.locator("#revision-3 input[name=to]").check()
    page.get_by_role("button", name="Compare selected revisions").click()

    numbered = dict(MetadataRevision.objects.filter(asset=asset).values_list("number", "pk"))
    expect(page).to_have_url(
        re.compile(rf"/metadata-history/compare/\?to={numbered[3]}&from={numbered[2]}$")
    )
    expect(page.locator("h1")).to_have_text("Compare metadata revisions")
    alt_text = page.locator("tr.mediaopt-field-alt_text")
    expect(alt_text).to_have_class(re.compile(r"\bmediaopt-differs\b"))
    expect(alt_text.locator("del")).to_have_text([" at dawn"])
    expect(alt_text.locator("ins")).to_have_text([" fishing"])
    expect(alt_text.locator("td").nth(1)).to_contain_text("Manual")
    caption = page.locator("tr.mediaopt-field-caption")
    expect(caption).not_to_have_class(re.compile(r"\bmediaopt-differs\b"))
    # Highlighted for the eye too, not only by a class.
    assert background(alt_text.locator("td").first) != background(caption.locator("td").first)
    assert background(alt_text.locator("ins")) != background(alt_text.locator("td").first)


def test_restore_a_revision_leaving_one_field_out(admin_page: Page):
    page = admin_page
    asset = with_history("market.jpg")
    generated = MetadataRevision.objects.get(asset=asset, number=2)

    page.goto(change_path(asset))
    page.get_by_role("link", name="Full metadata history").click()
    page.locator("#revision-2").get_by_role("link", name="Restore…").click()

    expect(page.locator("h1")).to_have_text("Restore revision 2?")
    alt_box = page.get_by_label("Alt text", exact=True)
    title_box = page.get_by_label("Title", exact=True)
    expect(alt_box).to_be_checked()
    expect(title_box).to_be_checked()
    expect(page.get_by_label("Caption", exact=True)).to_be_disabled()
    title_box.uncheck()
    page.get_by_role("button", name="Restore selected fields").click()

    expect(page.locator("ul.messagelist")).to_have_text(
        "Restored 1 field from revision 2 as revision 4."
    )
    expect(page.locator("#revision-4 h2")).to_contain_text("Restore of revision 2")
    page.goto(change_path(asset))
    expect(page.get_by_label(ALT_TEXT)).to_have_value("Red boats at dawn")
    expect(page.get_by_label(TITLE)).to_have_value("Typed title")
    expect(page.locator(".field-alt_text_source .readonly")).to_have_text("AI")
    expect(page.locator(".field-title_source .readonly")).to_have_text("Manual")

    asset.refresh_from_db()
    restored = asset.current_revision
    assert (restored.number, restored.kind, restored.changed_fields) == (
        4,
        RevisionKind.RESTORE,
        ["alt_text"],
    )
    assert restored.restored_from_id == generated.pk
    assert restored.actor.username == "admin"
