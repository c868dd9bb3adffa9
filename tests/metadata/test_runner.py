"""runner.py: whole jobs in sync mode against the fake OpenAI server (retries, backoff,
pauses, the heuristic), and the bounded concurrency: several provider calls in flight at
once on worker threads, every database write on the runner's own thread, and pause
stopping new calls while the ones in flight are still recorded."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.conf import Conf

from mediaopt.library import images
from metadata import generation, items, jobs, progress, runner
from metadata.models import (
    ItemState,
    JobKind,
    JobQueue,
    JobState,
    MetadataRevision,
    RegenerationJob,
)
from tests import factories
from tests.fakeopenai import Fault
from tests.metadata.test_jobs import item_of, make_assets, new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture
def sync_mode(monkeypatch):
    """django-q2 runs tasks inline (override_settings cannot reach Conf, read at import)."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def quick(settings):
    settings.MEDIAOPT_JOB_MAX_ATTEMPTS = 3
    settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS = 0.05
    settings.MEDIAOPT_RETRY_BASE_SECONDS = 0.0
    settings.OPENAI_TIMEOUT = 1.0


@pytest.fixture
def four_at_once(settings):
    settings.MEDIAOPT_JOB_CONCURRENCY = 4
    settings.OPENAI_TIMEOUT = 5.0
    settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS = 0.05


def test_calls_run_four_at_once_and_the_runner_thread_writes_everything(
    fake_openai_settings, four_at_once, monkeypatch
):
    fake_openai_settings.latency = 0.4
    assets = make_assets(12)
    job = new_job(assets)
    runner_thread = threading.get_ident()
    writers: set[int] = set()
    callers: set[int] = set()
    real_finish, real_send = items.finish_item, generation.send_ai_call

    def finish_item(**kwargs):
        writers.add(threading.get_ident())
        return real_finish(**kwargs)

    def send_ai_call(**kwargs):
        callers.add(threading.get_ident())
        return real_send(**kwargs)

    monkeypatch.setattr(items, "finish_item", finish_item)
    monkeypatch.setattr(generation, "send_ai_call", send_ai_call)

    runner.run_inline(job)

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert progress.progress(job).succeeded == 12
    assert fake_openai_settings.max_in_flight == 4  # bounded, and reached
    assert writers == {runner_thread}  # revisions, items and the ledger: the runner's thread only
    assert runner_thread not in callers and len(callers) > 1  # HTTP on worker threads
    assert MetadataRevision.objects.filter(job=job, provider="openai").count() == 12


def test_a_pause_starts_no_new_call_and_records_the_calls_in_flight(
    fake_openai_settings, four_at_once
):
    fake_openai_settings.latency = 0.3
    assets = make_assets(10)
    job = new_job(assets)
    paused = {}

    def pause_after_first() -> None:
        if not paused:
            jobs.pause(RegenerationJob.objects.get(pk=job.pk), reason="a person paused it")
            paused["requests"] = fake_openai_settings.request_count

    runner.run_inline(job, on_item=pause_after_first)

    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    counts = progress.progress(job)
    # Nothing new started after the pause; what was in flight then was written.
    assert fake_openai_settings.request_count == paused["requests"] <= 4
    assert counts.succeeded == fake_openai_settings.request_count
    assert counts.claimed == 0 and counts.pending == 10 - counts.succeeded
    assert set(job.items.filter(state=ItemState.PENDING).values_list("attempts", flat=True)) == {0}


# -- whole jobs in sync mode against the fake server -------------------------------------


def requests_by_asset(fake, assets) -> dict[int, list[int]]:
    """The statuses the fake answered for each asset's preview, in order."""
    previews = {}
    for asset in assets:
        with asset.file.open("rb") as handle:
            previews[images.preview(handle)] = asset.pk
    seen: dict[int, list[int]] = {asset.pk: [] for asset in assets}
    for request in fake.requests:
        seen[previews[request.image]].append(request.status)
    return seen


def test_a_job_survives_429s_and_500s_and_asks_nothing_after_success(
    fake_openai_settings, sync_mode, quick, django_capture_on_commit_callbacks
):
    fake = fake_openai_settings
    assets = make_assets(6)
    broken = assets[5]
    with broken.file.open("wb") as handle:  # the bytes rotted on disk after import
        handle.write(factories.corrupt_bytes())
    fake.script([429, 500, Fault.rate_limited(retry_after_ms=50), 500, 429])
    job = new_job(assets)

    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED and job.finished_at
    items = {item.asset_id: item for item in job.items.all()}
    assert items[broken.pk].state == ItemState.FAILED and items[broken.pk].error
    for asset in assets[:5]:
        item = items[asset.pk]
        assert item.state == ItemState.SUCCEEDED, item.error
        asset.refresh_from_db()
        assert asset.alt_text and asset.current_revision.job == job
    statuses = requests_by_asset(fake, assets[:5])
    for asset_id, answered in statuses.items():
        # One success per image, and it was the last request for that image.
        assert answered.count(200) == 1 and answered[-1] == 200, (asset_id, answered)
        assert len(answered) == items[asset_id].attempts
    assert sum(len(v) for v in statuses.values()) == 5 + 5
    assert progress.progress(job).succeeded == 5


def test_transient_errors_use_up_the_attempts_then_fail_the_item_with_the_reason(
    fake_openai_settings, sync_mode, quick, settings, django_capture_on_commit_callbacks
):
    settings.MEDIAOPT_JOB_MAX_ATTEMPTS = 2
    fake_openai_settings.always(500)
    [asset] = make_assets(1)
    job = new_job([asset])
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)
    item = item_of(job)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert item.state == ItemState.FAILED and item.attempts == 2
    assert item.error.startswith("gave up after 2 attempts: ") and "500" in item.error
    assert fake_openai_settings.request_count == 2


def test_backoff_sets_not_before_instead_of_sleeping_on_the_item(
    fake_openai_settings, quick, settings
):
    settings.MEDIAOPT_RETRY_BASE_SECONDS = 40.0
    settings.MEDIAOPT_JOB_RUN_SECONDS = 0.5  # then the runner hands over
    fake_openai_settings.always(500)
    [asset] = make_assets(1)
    job = new_job([asset], state=JobState.QUEUED)
    runner.run_job(job_id=job.pk)
    item = item_of(job)
    assert (item.state, item.attempts, item.lease_token) == (ItemState.PENDING, 1, None)
    assert item.not_before > timezone.now() + timedelta(seconds=15)
    assert "500" in item.error
    assert fake_openai_settings.request_count == 1


@pytest.mark.parametrize("fault", ["unauthorized", "insufficient_quota"])
def test_a_rejected_key_or_exhausted_quota_pauses_the_job_without_spending_the_attempt(
    fake_openai_settings, sync_mode, quick, fault, django_capture_on_commit_callbacks
):
    fake_openai_settings.always(fault)
    assets = make_assets(3)
    job = new_job(assets)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED and job.pause_reason
    assert fake_openai_settings.request_count == 1
    assert set(job.items.values_list("state", "attempts")) == {(ItemState.PENDING, 0)}

    fake_openai_settings.always(None)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.resume(job)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED and job.pause_reason == ""
    assert progress.progress(job).succeeded == 3


def test_an_upload_job_without_a_key_uses_the_heuristic(
    sync_mode, quick, django_capture_on_commit_callbacks
):
    [asset] = make_assets(1)
    job = new_job([asset], kind=JobKind.UPLOAD, queue=JobQueue.INTERACTIVE)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    # IMG_0000.jpg tells nothing: the heuristic changes nothing, and says so.
    item = item_of(job)
    assert item.state in {ItemState.SKIPPED, ItemState.SUCCEEDED}


def test_a_pause_between_items_stops_new_calls(
    fake_openai_settings, sync_mode, quick, monkeypatch, django_capture_on_commit_callbacks
):
    assets = make_assets(4)
    job = new_job(assets)
    real_finish = items.finish_item

    def finish_then_pause(**kwargs):
        done = real_finish(**kwargs)
        if not RegenerationJob.objects.filter(pk=job.pk, state=JobState.PAUSED).exists():
            jobs.pause(RegenerationJob.objects.get(pk=job.pk), reason="a person paused it")
        return done

    monkeypatch.setattr(items, "finish_item", finish_then_pause)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    assert fake_openai_settings.request_count == 1
    counts = progress.progress(job)
    assert (counts.succeeded, counts.pending, counts.claimed) == (1, 3, 0)
    assert set(job.items.filter(state=ItemState.PENDING).values_list("attempts", flat=True)) == {0}
