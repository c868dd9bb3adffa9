"""The media library as a person uses it: upload, browse, edit, a stale form, settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from mediaopt.library import ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import intake
from metadata.models import MetadataRevision, RevisionKind, Settings
from tests import factories

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
]

STALE = "changed since you opened it"
# The admin's label ("Alt text:"), not the read-only "Alt text source" beside it.
ALT_TEXT = re.compile(r"^Alt text:?$")


def imported(name: str, *, width: int = 48, color: str = "green") -> MediaAsset:
    outcome = intake.import_file(source=factories.jpeg(width, 36, color=color), original_name=name)
    assert outcome.status == ingest.IMPORTED, outcome.reason
    return outcome.asset


def change_path(asset: MediaAsset) -> str:
    return reverse("admin:mediaopt_mediaasset_change", args=[asset.pk])


def test_upload_two_images_and_see_their_thumbnails(admin_page: Page, tmp_path: Path):
    page = admin_page
    files = []
    for name, color in (("harbour.jpg", "navy"), ("bakery.jpg", "orange")):
        path = tmp_path / name
        path.write_bytes(factories.jpeg(120, 80, color=color))
        files.append(path)

    page.goto(reverse("admin:mediaopt_mediaasset_changelist"))
    page.get_by_role("link", name="Upload images").click()
    expect(page.locator("h1")).to_have_text("Upload images")
    page.get_by_label("Images").set_input_files(files)
    page.get_by_role("button", name="Upload").click()

    expect(page).to_have_url(re.compile(r"/admin/mediaopt/mediaasset/$"))
    expect(page.locator("ul.messagelist")).to_contain_text("2 images uploaded")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="harbour.jpg")).to_have_count(1)
    expect(rows.filter(has_text="bakery.jpg")).to_have_count(1)
    thumbnails = page.locator("#result_list img.mediaopt-thumb")
    expect(thumbnails).to_have_count(2)
    for index in range(2):
        # Loaded through the staff-only media view, not just present as a tag.
        thumbnail = thumbnails.nth(index)
        expect(thumbnail).to_have_js_property("complete", True)
        assert thumbnail.evaluate("img => img.naturalWidth") > 0
    assert set(MediaAsset.objects.values_list("original_name", flat=True)) == {
        "harbour.jpg",
        "bakery.jpg",
    }


def test_a_manual_edit_is_recorded_as_a_revision(admin_page: Page):
    page = admin_page
    asset = imported("boats.jpg")

    page.goto(change_path(asset))
    page.get_by_label(ALT_TEXT).fill("Red fishing boats moored at dawn")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    page.goto(change_path(asset))
    newest = page.locator(".inline-group tbody tr.has_original").first
    expect(newest).to_contain_text("Manual edit")
    expect(newest).to_contain_text("alt_text")
    expect(newest).to_contain_text("Red fishing boats moored at dawn")
    expect(page.locator(".field-alt_text_source .readonly")).to_have_text("Manual")

    asset.refresh_from_db()
    revision = asset.current_revision
    assert (revision.number, revision.kind) == (2, RevisionKind.MANUAL)
    assert revision.changed_fields == ["alt_text"]
    assert asset.alt_text == "Red fishing boats moored at dawn"
    assert asset.sources() == {
        "alt_text": Source.MANUAL,
        "title": "",
        "caption": "",
        "description": "",
        "keywords": "",
    }


def test_a_form_opened_before_another_save_refuses_to_overwrite_it(admin_page: Page):
    first = admin_page
    second = first.context.new_page()
    asset = imported("market.jpg")
    first.goto(change_path(asset))
    second.goto(change_path(asset))

    first.get_by_label(ALT_TEXT).fill("Saved first")
    first.get_by_role("button", name="Save", exact=True).click()
    expect(first.locator("ul.messagelist")).to_contain_text("was changed successfully")

    second.get_by_label(ALT_TEXT).fill("Saved second, from an old page")
    second.get_by_role("button", name="Save", exact=True).click()

    expect(second.locator("ul.errorlist.nonfield")).to_contain_text(f"{STALE} (revision 2)")
    asset.refresh_from_db()
    assert asset.alt_text == "Saved first"
    assert MetadataRevision.objects.filter(asset=asset).count() == 2


def test_a_setting_changed_on_the_settings_page_is_saved(admin_page: Page):
    page = admin_page
    row = Settings.objects.current()

    page.goto(reverse("admin:metadata_settings_changelist"))
    expect(page).to_have_url(re.compile(rf"/admin/metadata/settings/{row.pk}/change/$"))
    page.get_by_label("Language").fill("pt-BR")
    page.get_by_label("Caption").uncheck()
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator("ul.messagelist")).to_contain_text("Settings saved.")
    expect(page.get_by_label("Language")).to_have_value("pt-BR")
    row.refresh_from_db()
    assert row.language == "pt-BR"
    assert "caption" not in row.default_fields and "alt_text" in row.default_fields
