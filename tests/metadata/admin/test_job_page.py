"""Drafts (unconfirmed confirmation pages) are no jobs: never listed, and recover() removes
those older than a day."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf

from metadata import bulk, intake, jobs, recovery
from metadata.admin.jobs import FAILURES_PER_PAGE
from metadata.items import FALLBACK_NOTE
from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob
from tests import factories
from tests.factories import bare_assets, recount_jobs
from tests.fakeopenai import Fault

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


# -- one truthful job page -----------------------------------------------------------------

STATE_LABELS = dict(JobState.choices)
# One of them: the notices waiting for the user (messages of long jobs), on every page.
QUERIES_OF_THE_PAGE = 14


def job_in(state: str, *, size: int = 4, reason: str = "", start: int = 0) -> RegenerationJob:
    """A job of ``size`` items put into ``state`` as its transitions would leave it."""
    job = jobs.create_job(
        kind=JobKind.BULK, asset_ids=[a.pk for a in bare_assets(size, start=start)]
    ).job
    if state == JobState.DRAFT:
        return job
    jobs.enqueue_inline(job)
    if state == JobState.QUEUED:
        return job
    jobs.start(job)
    first, second, *_ = job.items.order_by("id")
    JobItem.objects.filter(pk=first.pk).update(state=ItemState.SUCCEEDED)
    JobItem.objects.filter(pk=second.pk).update(
        state=ItemState.SKIPPED, error="nothing to fill: every chosen field has a value"
    )
    recount_jobs(job)
    if state == JobState.PAUSED:
        jobs.pause(job, reason=reason)
    elif state == JobState.CANCELLED:
        jobs.cancel(job)
    elif state == JobState.FAILED:
        jobs.fail(job, reason="no model configured")
    elif state == JobState.COMPLETED:
        job.items.filter(state=ItemState.PENDING).update(state=ItemState.FAILED, error="refused")
        recount_jobs(job)
        assert jobs.complete_if_done(job)
    job.refresh_from_db()
    assert job.state == state
    return job


def page(client, job: RegenerationJob) -> str:
    return client.get(job_link(job)).content.decode()


def poll(client, job: RegenerationJob) -> str:
    url = reverse("admin:metadata_regenerationjob_progress", args=[job.pk])
    return client.get(url, {"shown": "running"}).content.decode()


def between(html: str, start: str, end: str) -> str:
    return html.split(start, 1)[1].split(end, 1)[0]


CASES = [
    (JobState.QUEUED, ""),
    (JobState.RUNNING, ""),
    (JobState.PAUSED, "out of credits: add credits or set your own key"),
    (JobState.PAUSED, "the provider's rate limit: 429 Too Many Requests"),
    (JobState.PAUSED, "paused by admin"),
    (JobState.CANCELLED, ""),
    (JobState.COMPLETED, ""),
    (JobState.FAILED, ""),
]


@pytest.mark.parametrize(("state", "reason"), CASES)
def test_every_state_is_said_once_and_the_same_on_the_page_and_its_poll(
    admin_client, django_capture_on_commit_callbacks, state, reason
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_in(state, reason=reason)
    label = STATE_LABELS[state]
    for html in (page(admin_client, job), poll(admin_client, job)):
        assert html.count('class="mediaopt-job-state"') == 1
        assert f'<dd class="mediaopt-job-state">{label}</dd>' in html
        assert ("mediaopt-job-pause-reason" in html) == (state == JobState.PAUSED)
        if state == JobState.PAUSED:
            assert (
                f'<dd class="mediaopt-job-pause-reason">{reason}</dd>'.replace("'", "&#x27;")
                in html
            )
        assert ("mediaopt-job-finished" in html) == (job.finished_at is not None)
        assert ("mediaopt-job-started" in html) and (
            ("not yet" in between(html, 'class="mediaopt-job-started">', "</dd>"))
            == (job.started_at is None)
        )
    html = page(admin_client, job)
    # The title and breadcrumb are not polled: they name no state that could go stale.
    head = between(html, "<title>", "</title>") + between(html, 'class="breadcrumbs"', "</div>")
    for other in STATE_LABELS.values():
        assert other not in head
    # Nothing below the panel repeats a state or times of its own.
    assert "Pause reason:" not in html and "Finished at:" not in html


def test_a_cancelled_job_says_what_it_did_not_a_percentage(
    admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_in(JobState.CANCELLED, size=25)
    html = page(admin_client, job)
    assert '<strong class="mediaopt-job-done">2 of 25</strong> worked before the cancel' in html
    assert "% done" not in html and "done (" not in html
    assert "23 images not processed" in html


def test_skips_are_counted_by_reason(admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_in(JobState.COMPLETED, size=6)
    JobItem.objects.filter(job=job, state=ItemState.FAILED).update(
        state=ItemState.SKIPPED, error="the image is busy in another job"
    )
    recount_jobs(job)
    skips = between(page(admin_client, job), '<ul class="mediaopt-job-skips">', "</ul>")
    assert skips == (
        "<li>the image is busy in another job: 4</li>"
        "<li>nothing to fill: every chosen field has a value: 1</li>"
    )


def test_scope_and_options_are_words_never_json(admin_client):
    job = jobs.create_job(
        kind=JobKind.BULK,
        asset_ids=[a.pk for a in bare_assets(3)],
        options={"fields": ["alt_text", "title"], "strategy": "fill_empty", "language": "de"},
    ).job
    jobs.enqueue_inline(job)
    html = page(admin_client, job)
    assert "Fill empty fields only; Alt text, title; German (de)" in html
    assert '"ids"' not in html and "&quot;ids&quot;" not in html
    assert bulk.describe_scope(job) in html


@pytest.mark.parametrize("size", [10, 10_000])
def test_the_job_page_costs_the_same_queries_at_10_and_10000_items(
    admin_client, django_capture_on_commit_callbacks, django_assert_num_queries, size
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_in(JobState.COMPLETED, size=size)
    with django_assert_num_queries(QUERIES_OF_THE_PAGE):
        response = admin_client.get(job_link(job))
    assert f"{size} of {size}</strong> done" in response.content.decode()


def test_every_failed_image_is_browsable_a_page_at_a_time(
    admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_in(JobState.COMPLETED, size=FAILURES_PER_PAGE + 7)
    failed = list(job.items.filter(state=ItemState.FAILED).order_by("id"))
    assert len(failed) == FAILURES_PER_PAGE + 5
    url = reverse("admin:metadata_regenerationjob_failures", args=[job.pk])
    assert f'href="{url}">all {len(failed)} failed images</a>' in page(admin_client, job)
    first = admin_client.get(url).content.decode()
    second = admin_client.get(url, {"page": 2}).content.decode()
    shown = [
        item
        for item in failed
        if reverse("admin:mediaopt_mediaasset_change", args=[item.asset_id]) + '"' in first
    ]
    assert shown == failed[:FAILURES_PER_PAGE]
    assert first.count("<tr><td>") == FAILURES_PER_PAGE and second.count("<tr><td>") == 5
    assert f'href="{url}?page=2" rel="next"' in first and 'rel="next"' not in second
    assert f'href="{url}?page=1" rel="prev"' in second
    assert f"{len(failed)} failed images; page 2 of 2." in second


def uploaded_by_a_job(name: str, django_capture_on_commit_callbacks) -> RegenerationJob:
    asset = intake.import_file(source=factories.jpeg(96, 64), original_name=name).asset
    with django_capture_on_commit_callbacks(execute=True):
        job = intake.start_upload_job(asset_ids=[asset.pk])
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    return job


def test_an_upload_the_heuristic_wrote_without_a_key_says_why_on_its_page(
    admin_client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.OPENAI_API_KEY = ""
    job = uploaded_by_a_job("harbour-at-dawn.jpg", django_capture_on_commit_callbacks)
    assert job.items.get().state == ItemState.SUCCEEDED
    html = page(admin_client, job)
    reasons = between(html, 'class="mediaopt-job-fallbacks">', "</ul>")
    # The page and its poll alike.
    assert reasons == between(poll(admin_client, job), 'class="mediaopt-job-fallbacks">', "</ul>")
    assert "Written from embedded text and file names instead of AI, because:" in html
    assert "No OpenAI API key is configured on the server" in reasons
    assert reasons.endswith(": 1</li>") and ".: 1" not in reasons  # the sentence's stop dropped


def test_an_upload_whose_ai_call_failed_says_the_providers_reason(
    admin_client, fake_openai_settings, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)
    fake_openai_settings.script([Fault.error(401)])
    job = uploaded_by_a_job("harbour-at-dawn.jpg", django_capture_on_commit_callbacks)
    item = job.items.get()
    assert item.state == ItemState.SUCCEEDED and item.error.startswith(FALLBACK_NOTE)
    reasons = between(page(admin_client, job), 'class="mediaopt-job-fallbacks">', "</ul>")
    assert "401" in reasons


def test_a_bulk_job_with_ai_says_nothing_of_fallbacks(
    admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = job_in(JobState.COMPLETED)
    assert "mediaopt-job-fallbacks" not in page(admin_client, job)
