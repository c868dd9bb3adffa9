"""Drafts (unconfirmed confirmation pages) are no jobs: never listed, and recover() removes
those older than a day."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from metadata import jobs, recovery
from metadata.models import JobKind, JobState, RegenerationJob
from tests.factories import bare_assets

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def draft_and_queued() -> tuple[RegenerationJob, RegenerationJob]:
    draft = jobs.create_job(kind=JobKind.BULK, asset_ids=[bare_assets(1)[0].pk]).job
    queued = jobs.create_job(kind=JobKind.BULK, asset_ids=[bare_assets(1, start=1)[0].pk]).job
    jobs.enqueue_inline(queued)
    assert draft.state == JobState.DRAFT
    return draft, queued


def job_link(job: RegenerationJob) -> str:
    return reverse("admin:metadata_regenerationjob_change", args=[job.pk])


@pytest.mark.parametrize(
    "page",
    ["admin:metadata_regenerationjob_changelist", "admin:metadata_settings_jobs", "admin:index"],
)
def test_no_page_that_lists_jobs_lists_a_draft(admin_client, page):
    draft, queued = draft_and_queued()
    html = admin_client.get(reverse(page)).content.decode()
    assert job_link(queued) in html
    assert job_link(draft) not in html


def test_recover_removes_drafts_older_than_a_day_and_keeps_the_rest():
    old_draft, queued = draft_and_queued()
    young_draft = jobs.create_job(kind=JobKind.BULK, asset_ids=[bare_assets(1, start=2)[0].pk]).job
    RegenerationJob.objects.filter(pk__in=[old_draft.pk, queued.pk]).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    recovery.recover()
    assert set(RegenerationJob.objects.values_list("pk", flat=True)) == {
        queued.pk,
        young_draft.pk,
    }
