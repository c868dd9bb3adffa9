"""Mail to the person who started a long job when it completes, pauses or fails: sent on
commit from the transitions in jobs.py, through Django's mail (locmem here)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from metadata import jobs
from metadata.models import ItemState, JobKind, JobState, RegenerationJob
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
