"""The runner's bounded concurrency: several provider calls in flight at once on worker
threads, every database write on the runner's own thread, and pause stopping new calls
while the ones in flight are still recorded."""

from __future__ import annotations

import threading

import pytest

from metadata import generation, jobs
from metadata.models import ItemState, JobState, MetadataRevision, RegenerationJob
from tests.metadata.test_jobs import make_assets, new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


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
    runner = threading.get_ident()
    writers: set[int] = set()
    callers: set[int] = set()
    real_finish, real_send = jobs.finish_item, generation.send_ai_call

    def finish_item(**kwargs):
        writers.add(threading.get_ident())
        return real_finish(**kwargs)

    def send_ai_call(**kwargs):
        callers.add(threading.get_ident())
        return real_send(**kwargs)

    monkeypatch.setattr(jobs, "finish_item", finish_item)
    monkeypatch.setattr(generation, "send_ai_call", send_ai_call)

    jobs.run_inline(job)

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert jobs.progress(job).succeeded == 12
    assert fake_openai_settings.max_in_flight == 4  # bounded, and reached
    assert writers == {runner}  # revisions, items and the ledger: the runner's thread only
    assert runner not in callers and len(callers) > 1  # HTTP on worker threads
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

    jobs.run_inline(job, on_item=pause_after_first)

    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    progress = jobs.progress(job)
    # Nothing new started after the pause; what was in flight then was written.
    assert fake_openai_settings.request_count == paused["requests"] <= 4
    assert progress.succeeded == fake_openai_settings.request_count
    assert progress.claimed == 0 and progress.pending == 10 - progress.succeeded
    assert set(job.items.filter(state=ItemState.PENDING).values_list("attempts", flat=True)) == {0}


def test_try_on_ten_first_stops_after_exactly_ten_even_with_concurrency(
    fake_openai_settings, four_at_once
):
    assets = make_assets(14)
    job = new_job(assets, options={"pause_after": 10})
    jobs.run_inline(job)
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    assert jobs.progress(job).succeeded == 10
    assert fake_openai_settings.request_count == 10
