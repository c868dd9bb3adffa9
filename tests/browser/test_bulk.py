"""Bulk regeneration in Chromium: the action, its confirmation page, "Regenerate all"."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from metadata.models import JobItem, JobState, RegenerationJob, Settings
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

CHANGELIST = reverse("admin:mediaopt_mediaasset_changelist")


@pytest.fixture(autouse=True)
def server_key(settings):
    # Bundled credits with a server key: the page shows an estimate in credits. No
    # cluster runs here, so no call is ever made with it.
    settings.OPENAI_API_KEY = "sk-test-not-used"


def test_select_two_images_confirm_and_see_the_job_start(admin_page: Page):
    page = admin_page
    factories.bare_assets(3)
    page.goto(CHANGELIST)
    boxes = page.locator("input.action-select")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.locator("select[name='action']").select_option(label="Regenerate metadata with AI")
    page.locator("button[name='index']").click()

    expect(page).to_have_url(re.compile(r"/mediaasset/regenerate-bulk/\d+/$"))
    expect(page.locator("h1")).to_have_text("Regenerate metadata with AI")
    expect(page.locator("#bulk-images")).to_have_text("2 images")
    expect(page.locator("#bulk-estimate")).to_contain_text(
        "2 images need an AI call: 2 credits; 10,000 available"
    )
    expect(page.get_by_role("checkbox", name="Alt text")).to_be_checked()
    expect(page.get_by_label("Fill empty fields only")).to_be_checked()
    page.get_by_role("button", name="Yes, regenerate").click()

    expect(page).to_have_url(re.compile(re.escape(CHANGELIST) + "$"))
    expect(page.locator("ul.messagelist")).to_contain_text("Regenerating metadata for 2 images")
    job = RegenerationJob.objects.get()
    assert job.state == JobState.QUEUED and JobItem.objects.filter(job=job).count() == 2


def test_regenerate_all_missing_alt_text_from_the_settings_page(admin_page: Page):
    page = admin_page
    factories.bare_assets(4)
    page.goto(reverse("admin:metadata_settings_change", args=[Settings.objects.current().pk]))
    page.get_by_role("button", name="Regenerate all missing alt text").click()

    expect(page).to_have_url(re.compile(r"/mediaasset/regenerate-bulk/\d+/$"))
    expect(page.locator("#bulk-scope")).to_contain_text("all images missing alt text")
    expect(page.locator("#bulk-images")).to_have_text("4 images")
    expect(page.locator("#bulk-estimate")).to_contain_text("4 credits")
    assert RegenerationJob.objects.get().state == JobState.DRAFT
    assert not JobItem.objects.exists()


def test_a_confirmed_regenerate_all_is_listed_on_the_settings_page(admin_page: Page):
    page = admin_page
    factories.bare_assets(4)
    settings_page = reverse("admin:metadata_settings_change", args=[Settings.objects.current().pk])
    page.goto(settings_page)
    page.get_by_role("button", name="Regenerate all missing alt text").click()
    page.get_by_role("button", name="Yes, regenerate").click()
    expect(page.locator("ul.messagelist")).to_be_visible()
    job = RegenerationJob.objects.get()

    page.goto(settings_page)
    row = page.locator(f"#mediaopt-settings-jobs tr[data-job='{job.pk}']")
    expect(row).to_contain_text("Queued")
    expect(row.locator(".mediaopt-job-done")).to_have_text("0/4")
    expect(row.locator(".mediaopt-job-started-by")).to_have_text(job.created_by.get_username())
    expect(row.get_by_role("link", name=f"#{job.pk}")).to_have_attribute(
        "href", reverse("admin:metadata_regenerationjob_change", args=[job.pk])
    )
    # Queued: the list keeps polling (every 2 s) and its answer keeps the row.
    with page.expect_response(lambda r: r.url.endswith("/settings/jobs/")) as polled:
        pass
    assert polled.value.status == 200
    expect(row).to_contain_text("Queued")
