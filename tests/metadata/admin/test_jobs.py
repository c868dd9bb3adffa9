"""A job's page: its summary (progress.job_summary), the progress poll, and the controls
(pause, resume, cancel, retry failed) through the admin, with the 403 rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf

from billing.models import EntryKind, LedgerEntry
from metadata import jobs, progress, runner
from metadata.admin.common import STOP_POLLING
from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob
from tests import factories
from tests.metadata.test_jobs import make_assets, new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PASSWORD = "a-long-test-password"


def job_url(view: str, job: RegenerationJob) -> str:
    return reverse(f"admin:metadata_regenerationjob_{view}", args=[job.pk])


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def viewer_client(client):
    """Staff who may see jobs but not run them."""
    client.force_login(staff("viewer", "view_regenerationjob"))
    return client


@pytest.fixture
def runner_client(client):
    """Staff who may see and control jobs (not a superuser: the permission decides)."""
    client.force_login(staff("runner", "view_regenerationjob", "run_regeneration"))
    return client


@pytest.fixture
def sync_mode(monkeypatch):
    """django-q2 runs tasks inline (override_settings cannot reach Conf, read once at import)."""
    monkeypatch.setattr(Conf, "SYNC", True)


def with_states(job: RegenerationJob, *states: str, error: str = "") -> None:
    """Put the job's items, in id order, into ``states``."""
    for item_id, state in zip(
        job.items.order_by("id").values_list("id", flat=True), states, strict=False
    ):
        JobItem.objects.filter(pk=item_id).update(
            state=state, error=error if state == ItemState.FAILED else ""
        )
    factories.recount_jobs(job)


def set_state(job: RegenerationJob, state: str) -> RegenerationJob:
    RegenerationJob.objects.filter(pk=job.pk).update(state=state)
    job.refresh_from_db()
    return job


# -- pause, resume, cancel mid-run -----------------------------------------------------


def after_item(n: int, action):
    """An on_item hook for run_inline: ``action()`` once, after the n-th item."""
    seen = {"items": 0}

    def hook() -> None:
        seen["items"] += 1
        if seen["items"] == n:
            action()

    return hook


def test_pause_then_resume_through_the_page_charges_each_image_once(
    fake_openai_settings, sync_mode, runner_client, django_capture_on_commit_callbacks
):
    assets = make_assets(4)
    job = new_job(assets)

    def pause() -> None:
        response = runner_client.post(job_url("pause", job))
        assert response.status_code == 302

    runner.run_inline(job, on_item=after_item(1, pause))

    job.refresh_from_db()
    assert job.state == JobState.PAUSED and job.pause_reason == "Paused by runner."
    assert fake_openai_settings.request_count == 1  # no call started after the pause
    counts = progress.progress(job)
    assert (counts.succeeded, counts.pending, counts.claimed) == (1, 3, 0)
    # The images not yet worked keep their attempts: a pause is nobody's fault.
    assert set(job.items.filter(state=ItemState.PENDING).values_list("attempts", flat=True)) == {0}

    with django_capture_on_commit_callbacks(execute=True):
        response = runner_client.post(job_url("resume", job))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED and job.pause_reason == ""
    summary = progress.job_summary(job)
    assert summary.progress.succeeded == 4
    assert fake_openai_settings.request_count == 4
    captures = LedgerEntry.objects.filter(job_id=job.pk, kind=EntryKind.CAPTURE)
    assert captures.count() == 4 and len(set(captures.values_list("item_id", flat=True))) == 4
    assert summary.credits_spent == 4


def test_cancel_mid_run_leaves_the_rest_untouched(fake_openai_settings, runner_client):
    assets = make_assets(4)
    job = new_job(assets)

    def cancel() -> None:
        response = runner_client.post(job_url("cancel", job), {"confirm": "yes"})
        assert response.status_code == 302

    runner.run_inline(job, on_item=after_item(2, cancel))

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.finished_at is not None
    assert fake_openai_settings.request_count == 2
    counts = progress.progress(job)
    assert (counts.succeeded, counts.cancelled, counts.remaining) == (2, 2, 0)


def test_cancel_without_confirmation_asks_first_and_changes_nothing(runner_client):
    job = new_job(factories.bare_assets(3), state=JobState.RUNNING)
    response = runner_client.post(job_url("cancel", job))
    assert response.status_code == 200
    assert b"Yes, cancel the job" in response.content
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_an_htmx_control_answers_with_the_panel_and_a_notice(runner_client):
    job = new_job(factories.bare_assets(3), state=JobState.RUNNING)
    response = runner_client.post(job_url("pause", job), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="mediaopt-job"' in html and "paused: no new image is started" in html
    assert ">Resume</button>" in html and ">Pause</button>" not in html


def test_a_control_the_state_does_not_allow_says_so_and_moves_nothing(runner_client):
    job = new_job(factories.bare_assets(2), state=JobState.COMPLETED)
    response = runner_client.post(job_url("pause", job), follow=True)
    assert "is completed: nothing was changed" in response.content.decode()
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED


def test_controls_refuse_get(runner_client):
    job = new_job(factories.bare_assets(1), state=JobState.RUNNING)
    for view in ("pause", "resume", "cancel", "retry_failed"):
        assert runner_client.get(job_url(view, job)).status_code == 405


# -- retry failed ----------------------------------------------------------------------


def test_retry_failed_makes_one_linked_job_of_only_the_failed_assets(
    runner_client, django_capture_on_commit_callbacks
):
    assets = factories.bare_assets(5)
    job = new_job(assets, options={"strategy": "overwrite"})
    with_states(
        job,
        ItemState.SUCCEEDED,
        ItemState.FAILED,
        ItemState.SKIPPED,
        ItemState.FAILED,
        ItemState.CANCELLED,
        error="bad image",
    )
    set_state(job, JobState.COMPLETED)

    with django_capture_on_commit_callbacks(execute=False):
        response = runner_client.post(job_url("retry_failed", job))

    retry = RegenerationJob.objects.get(retry_of=job)
    assert response.status_code == 302 and response["Location"] == job_url("change", retry)
    assert retry.kind == JobKind.RETRY and retry.state == JobState.QUEUED
    assert retry.options == {"strategy": "overwrite"}
    assert retry.created_by.username == "runner"
    assert set(retry.items.values_list("asset_id", flat=True)) == {assets[1].pk, assets[3].pk}

    # A second click finds every failed image busy in the retry: still one retry job.
    response = runner_client.post(job_url("retry_failed", job), follow=True)
    assert f"already being worked on (job #{retry.pk})" in response.content.decode()
    assert RegenerationJob.objects.filter(retry_of=job).count() == 1


def test_retry_failed_leaves_out_assets_an_earlier_retry_fixed(django_capture_on_commit_callbacks):
    assets = factories.bare_assets(3)
    job = new_job(assets)
    with_states(job, ItemState.FAILED, ItemState.FAILED, ItemState.FAILED, error="timeout")
    set_state(job, JobState.COMPLETED)
    first = jobs.retry_failed(job=job, actor=None).job
    with_states(first, ItemState.SUCCEEDED, ItemState.FAILED, ItemState.SKIPPED)
    set_state(first, JobState.COMPLETED)

    second = jobs.retry_failed(job=job, actor=None).job
    assert list(second.items.values_list("asset_id", flat=True)) == [assets[1].pk]
    assert second.retry_of_id == job.pk

    with_states(second, ItemState.SUCCEEDED)
    with pytest.raises(jobs.NothingToRetry, match="no failed image left"):
        jobs.retry_failed(job=job, actor=None)


# -- the progress poll -----------------------------------------------------------------


def job_with_some_of_everything(size: int) -> RegenerationJob:
    job = new_job(factories.bare_assets(size), state=JobState.RUNNING)
    with_states(
        job,
        ItemState.SUCCEEDED,
        ItemState.SKIPPED,
        ItemState.FAILED,
        ItemState.FAILED,
        error="the model refused",
    )
    return job


@pytest.mark.parametrize("size", [10, 2000])
def test_the_progress_poll_costs_the_same_queries_at_10_and_2000_items(
    size, admin_client, django_assert_num_queries
):
    job = job_with_some_of_everything(size)
    # Session, user, the job, its counts (the row and its claimed items), the items of
    # the rate's window, ledger, failures (skip reasons once the job stops moving).
    with django_assert_num_queries(7):
        response = admin_client.get(job_url("progress", job), {"shown": "running"})
    assert response.status_code == 200
    assert f"4 of {size}</strong>" in response.content.decode()


@pytest.mark.parametrize("size", [10, 2000])
def test_job_summary_takes_four_queries_whatever_the_size(size, django_assert_num_queries):
    job = job_with_some_of_everything(size)
    # The counts, the items of the rate's window (a running job), ledger, failures.
    with django_assert_num_queries(4):
        summary = progress.job_summary(job)
    assert (summary.progress.total, summary.progress.done, summary.progress.failed) == (
        size,
        4,
        2,
    )
    assert [f.reason for f in summary.failures] == ["the model refused"] * 2


def test_the_poll_goes_on_while_the_job_runs_and_stops_with_286_when_it_ends(admin_client):
    job = job_with_some_of_everything(6)
    running = admin_client.get(job_url("progress", job), {"shown": "running"})
    assert running.status_code == 200
    html = running.content.decode()
    assert 'hx-trigger="every 1s"' in html
    # The state did not change: the controls are not sent again, a control's notice stays.
    assert "mediaopt-job-controls" not in html and "mediaopt-job-notice" not in html

    with_states(job, *[ItemState.SUCCEEDED] * 4, ItemState.SUCCEEDED, ItemState.SUCCEEDED)
    jobs.complete_if_done(job)
    ended = admin_client.get(job_url("progress", job), {"shown": "running"})
    assert ended.status_code == STOP_POLLING
    html = ended.content.decode()
    assert "every 1s" not in html
    assert f"Job #{job.pk} completed: 6 succeeded" in html
    # The state changed: the controls come along out of band (nothing left but none).
    assert 'id="mediaopt-job-controls" class="mediaopt-job-controls" hx-swap-oob="true"' in html
    # And the last control's notice ("resumed: it continues…") is taken away with them.
    assert '<div id="mediaopt-job-notice" hx-swap-oob="true"></div>' in html


def test_the_poll_shows_a_pause_and_its_reason_and_keeps_polling(admin_client):
    job = new_job(factories.bare_assets(2), state=JobState.RUNNING)
    jobs.pause(job, reason="Out of credits: 0 available.")
    response = admin_client.get(job_url("progress", job), {"shown": "running"})
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Job #{job.pk} is paused: Out of credits: 0 available." in html
    assert ">Resume</button>" in html  # the state changed: controls out of band


@pytest.mark.parametrize("state", [JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED])
def test_every_final_state_stops_the_poll(admin_client, state):
    job = new_job(factories.bare_assets(1), state=state)
    assert admin_client.get(job_url("progress", job)).status_code == STOP_POLLING


def test_credits_spent_are_the_jobs_captures_net_of_refunds():
    from billing import ledger
    from billing.models import Account

    job = new_job(factories.bare_assets(3), state=JobState.RUNNING)
    account = Account.objects.current()
    items = list(job.items.values_list("id", flat=True))
    for item_id in items:
        key = ledger.hold_key(item_id=item_id, attempt=1)
        ledger.hold(
            account=account,
            amount=1,
            idempotency_key=key,
            expires_at=timezone.now() + timedelta(minutes=5),
            job_id=job.pk,
            item_id=item_id,
        )
        ledger.capture(hold_key=key, capture_key=ledger.capture_key(item_id=item_id))
    ledger.refund(capture_key=ledger.capture_key(item_id=items[0]), reason="a bad answer")
    assert progress.job_summary(job).credits_spent == 2


# -- who may do what -------------------------------------------------------------------


def test_a_view_only_user_sees_progress_but_no_controls_and_gets_403_on_each(viewer_client):
    job = new_job(factories.bare_assets(3), state=JobState.RUNNING)
    page = viewer_client.get(job_url("change", job))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="mediaopt-job-progress"' in html
    for label in ("Pause", "Resume", "Cancel job", "Retry failed"):
        assert f">{label}</button>" not in html
    assert viewer_client.get(job_url("progress", job)).status_code == 200

    for view in ("pause", "resume", "cancel", "retry_failed"):
        assert viewer_client.post(job_url(view, job), {"confirm": "yes"}).status_code == 403
        htmx = viewer_client.post(job_url(view, job), headers={"HX-Request": "true"})
        assert htmx.status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_staff_without_view_permission_gets_403_on_the_poll(client):
    client.force_login(staff("nobody"))
    job = new_job(factories.bare_assets(1), state=JobState.RUNNING)
    assert client.get(job_url("progress", job)).status_code == 403


def test_a_user_with_the_permission_sees_the_controls_the_state_allows(runner_client):
    job = new_job(factories.bare_assets(2), state=JobState.RUNNING)
    html = runner_client.get(job_url("change", job)).content.decode()
    assert ">Pause</button>" in html and ">Cancel job</button>" in html
    assert ">Resume</button>" not in html and ">Retry failed</button>" not in html
    assert "X-CSRFToken" in html


def test_jobs_cannot_be_added_or_deleted_in_the_admin(admin_client):
    job = new_job(factories.bare_assets(1))
    assert admin_client.get(reverse("admin:metadata_regenerationjob_add")).status_code == 403
    assert admin_client.get(job_url("delete", job)).status_code == 403


def test_the_list_shows_each_jobs_progress_in_a_constant_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    for start, size in ((0, 3), (100, 5), (200, 7)):
        job = new_job(factories.bare_assets(size, start=start), state=JobState.RUNNING)
        with_states(job, ItemState.SUCCEEDED, ItemState.FAILED)
    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:metadata_regenerationjob_changelist"))
    html = response.content.decode()
    for size in (3, 5, 7):
        assert f"2/{size}" in html
