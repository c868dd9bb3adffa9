"""The settings page's recent jobs: who started each, their counts, the 2 s poll that
stops (286) once no listed job moves, a constant number of queries, and the permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from metadata import jobs
from metadata.admin.common import STOP_POLLING
from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob, Settings
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PASSWORD = "a-long-test-password"
JOBS_URL = "admin:metadata_settings_jobs"


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def settings_url() -> str:
    return reverse("admin:metadata_settings_change", args=[Settings.objects.current().pk])


def make_job(n: int, *, start: int, kind: str = JobKind.BULK, created_by=None, state=None):
    assets = factories.bare_assets(n, start=start)
    job = jobs.create_job(kind=kind, asset_ids=[a.pk for a in assets], created_by=created_by).job
    if state is not None:
        RegenerationJob.objects.filter(pk=job.pk).update(state=state)
    return job


def set_items(job: RegenerationJob, *states: str) -> None:
    for item_id, state in zip(
        job.items.order_by("id").values_list("id", flat=True), states, strict=False
    ):
        JobItem.objects.filter(pk=item_id).update(state=state)
    factories.recount_jobs(job)


@pytest.fixture
def viewer(client):
    user = staff("viewer", "view_regenerationjob", "view_settings")
    client.force_login(user)
    return user


def test_partial_lists_jobs_with_creator_and_counts(client, viewer):
    mine = make_job(4, start=0, created_by=viewer, state=JobState.RUNNING)
    set_items(mine, ItemState.SUCCEEDED, ItemState.FAILED, ItemState.SKIPPED)
    make_job(2, start=100, kind=JobKind.BULK, state=JobState.COMPLETED)
    make_job(1, start=200, kind=JobKind.UPLOAD, state=JobState.COMPLETED)

    response = client.get(reverse(JOBS_URL))

    assert response.status_code == 200
    rows = response.context["recent_jobs"]
    assert [job.started_by for job in rows] == ["job", "command", "viewer"]
    first = rows[-1]
    assert (first.item_total, first.item_done, first.item_succeeded, first.item_failed) == (
        4,
        3,
        1,
        1,
    )
    html = response.content.decode()
    assert "3/4" in html
    assert "1 succeeded" in html and "1 failed" in html
    assert reverse("admin:metadata_regenerationjob_change", args=[mine.pk]) in html
    assert 'hx-trigger="every 2s"' in html


def test_lists_the_ten_most_recent(client, viewer):
    made = [make_job(1, start=i, state=JobState.COMPLETED) for i in range(12)]
    rows = client.get(reverse(JOBS_URL)).context["recent_jobs"]
    assert [job.pk for job in rows] == [job.pk for job in reversed(made)][:10]


def test_286_when_every_job_is_final_or_waiting(client, viewer):
    make_job(1, start=0, state=JobState.COMPLETED)
    make_job(1, start=1, state=JobState.PAUSED)
    make_job(1, start=2, state=JobState.CANCELLED)
    response = client.get(reverse(JOBS_URL))
    assert response.status_code == STOP_POLLING
    assert "hx-trigger" not in response.content.decode()


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.QUEUED])
def test_200_while_one_job_moves(client, viewer, state):
    make_job(1, start=0, state=JobState.COMPLETED)
    make_job(1, start=1, state=state)
    assert client.get(reverse(JOBS_URL)).status_code == 200


def test_settings_page_shows_the_jobs(client, viewer):
    make_job(1, start=0, created_by=viewer, state=JobState.RUNNING)
    html = client.get(settings_url()).content.decode()
    assert '<h2 id="jobs">Jobs</h2>' in html
    assert 'id="mediaopt-settings-jobs"' in html
    assert reverse(JOBS_URL) in html


def count_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse(JOBS_URL)).status_code == 200
    return len(queries)


def test_queries_do_not_grow_with_items(client, viewer):
    for i in range(3):
        make_job(1, start=i, created_by=viewer, state=JobState.RUNNING)
    small = count_queries(client)
    RegenerationJob.objects.all().delete()
    for i in range(3):
        make_job(500, start=1000 + i * 500, created_by=viewer, state=JobState.RUNNING)
    assert JobItem.objects.count() == 1500
    assert count_queries(client) == small


def test_staff_without_view_permission_gets_403_and_no_list(client):
    client.force_login(staff("settings-only", "view_settings", "change_settings"))
    make_job(1, start=0, state=JobState.RUNNING)
    assert client.get(reverse(JOBS_URL)).status_code == 403
    html = client.get(settings_url()).content.decode()
    assert 'id="mediaopt-settings-jobs"' not in html
    assert '<h2 id="jobs">' not in html


def test_regeneration_job_changelist_still_counts(admin_client):
    make_job(3, start=0, state=JobState.RUNNING)
    response = admin_client.get(reverse("admin:metadata_regenerationjob_changelist"))
    assert response.status_code == 200
    assert "0/3" in response.content.decode()
