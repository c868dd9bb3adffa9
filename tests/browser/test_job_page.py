"""A job's page in Chromium, the job worked by a REAL bulk ``qcluster`` against the live
server's database and the fake OpenAI server (slowed down, so progress can be watched).

The clusters come from tests/browser/test_jobs.py's module fixture (started once for
this module too, stopped with one SIGTERM each).
"""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from playwright.sync_api import Page, expect

from metadata import jobs, progress
from metadata.models import JobItem, JobKind, JobState, RegenerationJob
from tests.browser.conftest import PASSWORD, log_in
from tests.browser.test_jobs import clusters, imported, media_root, module_media  # noqa: F401
from tests.fakeopenai import FakeOpenAI, Fault

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

IMAGES = 40
FAILING = 2  # the first answers are a 400 (not retried): these images fail


def job_path(view: str, job: RegenerationJob) -> str:
    return reverse(f"admin:metadata_regenerationjob_{view}", args=[job.pk])


def done_count(page: Page) -> int:
    text = page.locator("#mediaopt-job-progress .mediaopt-job-done").inner_text()
    return int(text.split(" of ")[0])


def wait_for_intermediate_values(
    page: Page, *, total: int, count: int, seconds: float, above: int = 0
) -> set:
    """Distinct values of "done" above ``above`` and below total, as the page shows them."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(seen) < count and time.monotonic() < deadline:
        value = done_count(page)
        if above < value < total:
            seen.add(value)
        page.wait_for_timeout(150)
    return seen


def bulk_job(n: int) -> RegenerationJob:
    assets = [imported(f"JOB_{i:03}.jpg", width=30 + i, color="green") for i in range(n)]
    creation = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets])
    return creation.job


def test_a_bulk_job_is_watched_paused_resumed_cancelled_and_its_failures_retried(
    clusters,  # noqa: F811
    admin_page: Page,
    fake_openai: FakeOpenAI,
):
    page = admin_page
    fake_openai.latency = 0.5
    fake_openai.script([Fault.error(400)] * FAILING)
    job = bulk_job(IMAGES)
    polls: list[str] = []
    page.on("request", lambda request: "/progress/" in request.url and polls.append(request.url))

    jobs.enqueue(job)
    page.goto(job_path("change", job))
    panel = page.locator("#mediaopt-job")

    seen = wait_for_intermediate_values(page, total=IMAGES, count=2, seconds=30)
    assert len(seen) >= 2, f"the bar showed {seen}"

    page.get_by_role("button", name="Pause").click()
    expect(panel).to_contain_text(f"Job #{job.pk} is paused: Paused by admin.")
    expect(panel.get_by_role("button", name="Resume")).to_be_visible()
    expect(panel.get_by_role("button", name="Pause")).to_have_count(0)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    # In-flight calls finish (at most the concurrency's worth, bounded); then nothing moves.
    # Settled means no item is claimed any more and the count did not move for a second: a
    # count that merely held still for a second could still have a call in flight.
    at_pause = paused_at = progress.progress(job).done
    settled_by = time.monotonic() + 15
    while time.monotonic() < settled_by:
        page.wait_for_timeout(1000)
        now = progress.progress(job)
        if now.done == paused_at and now.claimed == 0:
            break
        paused_at = now.done
    assert paused_at - at_pause <= 8  # no more than the calls in flight when paused
    page.wait_for_timeout(1500)
    assert progress.progress(job).done == paused_at

    page.get_by_role("button", name="Resume").click()
    expect(panel.get_by_role("button", name="Pause")).to_be_visible()
    more = wait_for_intermediate_values(page, total=IMAGES, count=1, seconds=30, above=paused_at)
    assert more, "no progress shown after Resume"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel job").click()
    expect(panel).to_contain_text(f"Job #{job.pk} was cancelled")
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    # Failures are listed with their reasons.
    failures = page.locator(".mediaopt-job-failures tbody tr")
    expect(failures).to_have_count(FAILING)
    expect(failures.first).to_contain_text("400")

    # The job has ended: the page asks no more.
    ended_at = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == ended_at, polls[ended_at:]

    # Retry failed: a new job of the failed images only, followed on its own page until it
    # completes (HTTP 286), after which no poll is sent.
    fake_openai.latency = 0.3
    page.get_by_role("button", name="Retry failed").click()
    expect(page.locator("ul.messagelist li.success")).to_contain_text(
        f"Retrying {FAILING} failed images of job #{job.pk}"
    )
    retry = RegenerationJob.objects.get(retry_of=job)
    expect(page).to_have_url(re.compile(re.escape(job_path("change", retry)) + "$"))
    assert JobItem.objects.filter(job=retry).count() == FAILING
    expect(page.locator("#mediaopt-job")).to_contain_text(
        f"Job #{retry.pk} completed: {FAILING} succeeded", timeout=30_000
    )
    ended_at = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == ended_at, polls[ended_at:]


def test_a_view_only_user_sees_the_job_without_controls_and_gets_403s(page: Page):
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_regenerationjob"))
    job = bulk_job(3)
    RegenerationJob.objects.filter(pk=job.pk).update(state=JobState.PAUSED, pause_reason="Held.")
    log_in(page, viewer)

    page.goto(job_path("change", job))
    panel = page.locator("#mediaopt-job")
    expect(panel).to_contain_text(f"Job #{job.pk} is paused: Held.")
    expect(panel.locator("button")).to_have_count(0)

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for view in ("pause", "resume", "cancel", "retry_failed"):
        response = page.request.post(
            job_path(view, job),
            headers={"X-CSRFToken": token, "HX-Request": "true"},
            form={"confirm": "yes"},
        )
        assert response.status == 403, (view, response.status)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
