"""Undoing a finished job in Chromium: from the job's page to the confirmation with its
conflicts, then the undo job, worked by a REAL interactive ``qcluster``, to the library
showing the values from before the job.

The clusters come from tests/browser/test_jobs.py's module fixture (started once for this
module too, stopped with one SIGTERM each).
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import jobs, revisions
from metadata.models import ItemState, JobItem, JobKind, JobQueue, JobState, RegenerationJob
from metadata.strategies import FieldChange, Plan
from tests.browser.test_jobs import (  # noqa: F401
    OLD_ALT_TEXT,
    clusters,
    imported,
    media_root,
    module_media,
    with_old_ai_text,
)
from tests.factories import recount_jobs

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

JOB_ALT_TEXT = "Boats at dusk"
JOB_TITLE = "Boats"
HAND_ALT_TEXT = "Fishing boats, by hand"


def job_path(view: str, job: RegenerationJob) -> str:
    return reverse(f"admin:metadata_regenerationjob_{view}", args=[job.pk])


def finished_job_that_wrote(assets: list[MediaAsset]) -> RegenerationJob:
    """A completed bulk job that gave each image new alt text and a title (as AI)."""
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets]).job
    for asset in assets:
        asset.refresh_from_db()
        revisions.apply_plan(
            asset=asset,
            plan=Plan(
                changes={
                    "alt_text": FieldChange(JOB_ALT_TEXT, Source.AI),
                    "title": FieldChange(JOB_TITLE, Source.AI),
                }
            ),
            based_on_revision_id=asset.current_revision_id,
            job=job,
            provider="openai",
            model="gpt-4o-mini",
        )
    JobItem.objects.filter(job=job).update(state=ItemState.SUCCEEDED)
    RegenerationJob.objects.filter(pk=job.pk).update(
        state=JobState.COMPLETED, finished_at=timezone.now()
    )
    recount_jobs(job)
    return job


def test_a_finished_job_is_undone_keeping_a_later_hand_edit(
    clusters,  # noqa: F811
    admin_page: Page,
):
    page = admin_page
    assets = [
        with_old_ai_text(imported(f"UNDO_{i}.jpg", width=30 + i, color="teal")) for i in range(3)
    ]
    job = finished_job_that_wrote(assets)
    edited = assets[1]

    # After the job, a person corrects one image's alt text by hand.
    page.goto(reverse("admin:mediaopt_mediaasset_change", args=[edited.pk]))
    page.get_by_label(re.compile(r"^Alt text:?$")).fill(HAND_ALT_TEXT)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")

    page.goto(job_path("change", job))
    page.get_by_role("link", name="Undo this job…").click()

    expect(page).to_have_url(re.compile(re.escape(job_path("undo", job)) + "$"))
    expect(page.locator("#undo-images")).to_contain_text(f"Job #{job.pk} changed 3 images.")
    expect(page.locator("#undo-unchanged")).to_contain_text("2 are still as the job left them")
    expect(page.locator("#undo-changed-since")).to_contain_text("1 was changed again since")
    conflicts = page.locator("#undo-conflicts tbody tr")
    expect(conflicts).to_have_count(1)
    expect(conflicts.locator("td").nth(0)).to_have_text("UNDO_1.jpg")
    expect(conflicts.locator("td.undo-restore")).to_have_text("Title")
    expect(conflicts.locator("td.undo-kept")).to_have_text("Alt text")
    expect(page.locator("#undo-cost")).to_have_text("It costs no credits")
    expect(
        page.get_by_label("Also replace values changed after this job (override)")
    ).not_to_be_checked()

    page.get_by_role("button", name="Confirm").click()

    undo_job = RegenerationJob.objects.get(kind=JobKind.UNDO, undo_of=job)
    expect(page).to_have_url(re.compile(re.escape(job_path("change", undo_job)) + "$"))
    expect(page.locator("ul.messagelist li.success")).to_contain_text(
        f"Undoing job #{job.pk} on 3 images — job #{undo_job.pk}. It costs no credits."
    )
    panel = page.locator("#mediaopt-job")
    expect(panel.locator(".mediaopt-job-undo-of")).to_have_text(f"Undo of job #{job.pk}.")
    # Worked by the interactive cluster; the page follows it until it is done.
    expect(panel).to_contain_text(
        f"Job #{undo_job.pk} completed: 3 succeeded, 0 skipped, 0 failed.", timeout=30_000
    )
    expect(panel.locator(".mediaopt-job-restored")).to_have_text(
        f"3 images restored to their values from before job #{job.pk}."
    )
    expect(panel.locator(".mediaopt-job-kept-summary")).to_have_text(
        f"On 1 image, values changed after job #{job.pk} were kept:"
    )
    kept = panel.locator(".mediaopt-job-kept tbody tr")
    expect(kept).to_have_count(1)
    expect(kept).to_have_text("UNDO_1.jpgAlt text")
    expect(panel.get_by_role("link", name="Undo this undo…")).to_be_visible()
    undo_job.refresh_from_db()
    assert (undo_job.queue, undo_job.state) == (JobQueue.INTERACTIVE, JobState.COMPLETED)

    # The library shows the values from before the job, and the hand edit.
    panel.get_by_role("link", name="See the 3 images this job changed").click()
    expect(page).to_have_url(re.compile(r"/admin/mediaopt/mediaasset/\?job=" + str(undo_job.pk)))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)
    for asset, alt_text in (
        (assets[0], OLD_ALT_TEXT),
        (assets[1], HAND_ALT_TEXT),
        (assets[2], OLD_ALT_TEXT),
    ):
        row = rows.filter(has_text=asset.original_name)
        expect(row.locator(".field-alt_text_display")).to_have_text(alt_text)
    assert {
        a.original_name: (a.alt_text, a.alt_text_source, a.title)
        for a in MediaAsset.objects.filter(pk__in=[a.pk for a in assets])
    } == {
        "UNDO_0.jpg": (OLD_ALT_TEXT, Source.AI, ""),
        "UNDO_1.jpg": (HAND_ALT_TEXT, Source.MANUAL, ""),
        "UNDO_2.jpg": (OLD_ALT_TEXT, Source.AI, ""),
    }
