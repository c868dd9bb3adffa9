"""Mail to the person who started a long job when it completes, pauses or fails, and a
message on their next admin page: sent on commit from the transitions in jobs.py, the mail
through Django's mail (locmem here)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from metadata import intake, jobs, notifications, runner, tasks
from metadata.models import (
    ItemState,
    JobKind,
    JobState,
    Notice,
    NoticeLevel,
    RegenerationJob,
)
from tests import factories
from tests.factories import bare_assets, recount_jobs

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def running_job(*, user, started_ago: timedelta, size: int = 3, start: int = 0) -> RegenerationJob:
    assets = bare_assets(size, start=start)
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets], created_by=user).job
    jobs.enqueue_inline(job)
    jobs.start(job)
    RegenerationJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - started_ago)
    job.refresh_from_db()
    return job


@pytest.fixture
def starter():
    return User.objects.create_user("ada", email="ada@example.com", password="x-long-pass")


def test_a_long_job_that_completes_mails_its_starter_once_on_commit(
    starter, django_capture_on_commit_callbacks
):
    job = running_job(user=starter, started_ago=timedelta(minutes=5))
    first, *rest = job.items.order_by("id")
    job.items.filter(pk=first.pk).update(state=ItemState.FAILED, error="boom")
    job.items.exclude(pk=first.pk).update(state=ItemState.SUCCEEDED)
    recount_jobs(job)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert jobs.complete_if_done(job)
    assert mail.outbox == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["ada@example.com"]
    assert sent.subject == f"Job #{job.pk} completed: 2 succeeded, 1 failed"


def test_a_pause_says_why(starter, django_capture_on_commit_callbacks):
    job = running_job(user=starter, started_ago=timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.pause(job, reason="out of credits")
    assert [m.subject for m in mail.outbox] == [f"Job #{job.pk} paused (out of credits)"]


def test_a_pause_the_starter_made_tells_nobody_one_by_someone_else_tells_the_starter(
    starter, django_capture_on_commit_callbacks
):
    mine = running_job(user=starter, started_ago=timedelta(minutes=2))
    theirs = running_job(user=starter, started_ago=timedelta(minutes=2), start=10)
    other = User.objects.create_user("eve", password="x-long-pass")
    with django_capture_on_commit_callbacks(execute=True):
        jobs.pause(mine, reason="Paused by ada.", by=starter)
        jobs.pause(theirs, reason="Paused by eve.", by=other)
    assert [m.subject for m in mail.outbox] == [f"Job #{theirs.pk} paused (Paused by eve.)"]
    assert list(Notice.objects.values_list("job_id", flat=True)) == [theirs.pk]


def test_a_failure_says_why(starter, django_capture_on_commit_callbacks):
    job = running_job(user=starter, started_ago=timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.fail(job, reason="no model configured")
    assert [m.subject for m in mail.outbox] == [f"Job #{job.pk} failed (no model configured)"]


def test_a_job_shorter_than_a_minute_sends_nothing(starter, django_capture_on_commit_callbacks):
    job = running_job(user=starter, started_ago=timedelta(seconds=20))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.pause(job, reason="out of credits")
    assert mail.outbox == []


def test_a_cancel_sends_nothing_the_user_did_it(starter, django_capture_on_commit_callbacks):
    job = running_job(user=starter, started_ago=timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.cancel(job)
    assert job.state == JobState.CANCELLED
    assert mail.outbox == []


def test_a_job_without_a_user_or_address_sends_nothing(django_capture_on_commit_callbacks):
    nobody = running_job(user=None, started_ago=timedelta(minutes=5))
    silent = running_job(
        user=User.objects.create_user("bob", password="x-long-pass"),
        started_ago=timedelta(minutes=5),
        start=10,
    )
    with django_capture_on_commit_callbacks(execute=True):
        jobs.pause(nobody, reason="out of credits")
        jobs.pause(silent, reason="out of credits")
    assert mail.outbox == []


# -- the message on the next page ------------------------------------------------------------


def page_messages(client) -> list[str]:
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_a_real_long_job_mails_its_starter_and_shows_them_its_message_once(
    client, fake_openai_settings, django_capture_on_commit_callbacks
):
    ada = User.objects.create_superuser("ada-admin", email="ada@example.com", password="x-long-pw")
    bob = User.objects.create_superuser("bob-admin", email="bob@example.com", password="x-long-pw")
    assets = [
        intake.import_file(source=factories.jpeg(40 + i, 30), original_name=f"IMG_{i}.jpg").asset
        for i in range(3)
    ]
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets], created_by=ada).job

    def ran_for_minutes() -> None:
        # The job has been running five minutes by the time each item is done.
        RegenerationJob.objects.filter(pk=job.pk).update(
            started_at=timezone.now() - timedelta(minutes=5)
        )

    with django_capture_on_commit_callbacks(execute=True):
        runner.run_inline(job, on_item=ran_for_minutes)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["ada@example.com"], f"Job #{job.pk} completed: 3 succeeded")
    ]

    client.force_login(bob)
    assert page_messages(client) == []  # not the starter: nothing
    client.force_login(ada)
    job_page = reverse("admin:metadata_regenerationjob_change", args=[job.pk])
    assert page_messages(client) == [
        f'Job #{job.pk} completed: 3 succeeded. <a href="{job_page}">Open job #{job.pk}</a>'
    ]
    html = client.get(reverse("admin:index")).content.decode()
    assert f"Job #{job.pk} completed" not in html  # once, not twice
    assert Notice.objects.get().seen_at is not None


def test_the_message_shows_on_the_page_and_links_to_the_job(
    client, starter, django_capture_on_commit_callbacks
):
    starter.is_staff = starter.is_superuser = True
    starter.save()
    job = running_job(user=starter, started_ago=timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.pause(job, reason="out of credits")
    client.force_login(starter)
    html = client.get(reverse("admin:metadata_regenerationjob_changelist")).content.decode()
    job_page = reverse("admin:metadata_regenerationjob_change", args=[job.pk])
    assert 'class="warning"' in html
    assert f'Job #{job.pk} paused (out of credits). <a href="{job_page}">' in html


def test_a_user_without_an_address_still_gets_the_message(django_capture_on_commit_callbacks):
    silent = User.objects.create_user("carol", password="x-long-pass")
    job = running_job(user=silent, started_ago=timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.fail(job, reason="no model configured")
    assert mail.outbox == []
    [notice] = notifications.take_unseen(user_id=silent.pk)
    assert (notice.level, notice.text) == (
        NoticeLevel.ERROR,
        f"Job #{job.pk} failed (no model configured)",
    )
    assert notifications.take_unseen(user_id=silent.pk) == []


def test_a_newer_state_replaces_the_unseen_notice_of_the_same_job(
    starter, django_capture_on_commit_callbacks
):
    job = running_job(user=starter, started_ago=timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.pause(job, reason="out of credits")
        jobs.resume(job)
        jobs.start(job)
        RegenerationJob.objects.filter(pk=job.pk).update(
            started_at=timezone.now() - timedelta(minutes=5)
        )
        job.items.update(state=ItemState.SUCCEEDED)
        recount_jobs(job)  # written past the one writer: its counts set as it would
        jobs.complete_if_done(job)
    assert [n.text for n in notifications.take_unseen(user_id=starter.pk)] == [
        f"Job #{job.pk} completed: 3 succeeded"
    ]


def test_a_short_job_leaves_no_notice(starter, django_capture_on_commit_callbacks):
    job = running_job(user=starter, started_ago=timedelta(seconds=20))
    with django_capture_on_commit_callbacks(execute=True):
        jobs.pause(job, reason="out of credits")
    assert not Notice.objects.exists()


def test_the_prune_deletes_notices_seen_a_week_ago_and_those_never_seen_for_a_month(starter):
    now = timezone.now()
    job = running_job(user=starter, started_ago=timedelta(minutes=5))

    def notice(created_days: int, seen_days: int | None) -> Notice:
        row = Notice.objects.create(user=starter, job=job, level=NoticeLevel.SUCCESS, text="x")
        Notice.objects.filter(pk=row.pk).update(
            created_at=now - timedelta(days=created_days),
            seen_at=None if seen_days is None else now - timedelta(days=seen_days),
        )
        return row

    kept = {notice(9, 6).pk, notice(20, None).pk, notice(0, 0).pk}
    notice(10, 8)
    notice(31, None)
    assert notifications.prune(now=now) == 2
    assert set(Notice.objects.values_list("pk", flat=True)) == kept


def test_the_daily_prune_task_prunes_notices(starter):
    job = running_job(user=starter, started_ago=timedelta(minutes=5))
    row = Notice.objects.create(user=starter, job=job, level=NoticeLevel.SUCCESS, text="x")
    Notice.objects.filter(pk=row.pk).update(seen_at=timezone.now() - timedelta(days=8))
    tasks.prune_revisions()
    assert not Notice.objects.exists()
