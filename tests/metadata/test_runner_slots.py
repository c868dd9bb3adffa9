"""runner_slots.py: a job's extra runners. The slots' tokens (one runner a slot, a second
delivery exits, a dead runner's slot refilled once stale), and two runners working one job
at once in this process: real threads, the real runner, the fake server over HTTP."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import EntryKind, LedgerEntry
from metadata import items, jobs, progress, runner, runner_slots
from metadata.models import ItemState, JobState, MetadataRevision, RunnerSlot
from metadata.providers import openai as provider
from tests.metadata.test_jobs import make_assets, new_job

pytestmark = [pytest.mark.timeout(90)]


@pytest.fixture
def sent(monkeypatch):
    """The tasks handed to django-q2, instead of its broker: (args, kwargs)."""
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda *args, **kwargs: calls.append((args, kwargs))
    )
    return calls


@pytest.mark.django_db
def test_fill_sends_one_task_a_free_slot_and_none_while_they_beat(
    settings, sent, django_capture_on_commit_callbacks
):
    settings.MEDIAOPT_JOB_RUNNERS = 3
    job = new_job(make_assets(2), state=JobState.RUNNING)

    with django_capture_on_commit_callbacks(execute=True):
        assert runner_slots.fill(job) == [1, 2]
    assert [kwargs["slot"] for _, kwargs in sent] == [1, 2]
    assert {kwargs["q_options"]["cluster"] for _, kwargs in sent} == {job.queue}
    tokens = {
        row.slot: row.token for row in RunnerSlot.objects.filter(job=job)
    }  # what each task carries
    assert [uuid.UUID(kwargs["runner_token"]) for _, kwargs in sent] == [tokens[1], tokens[2]]

    with django_capture_on_commit_callbacks(execute=True):
        assert runner_slots.fill(job) == []  # both are named and fresh
    assert len(sent) == 2

    # Slot 2's runner died: once its heartbeat is stale, the next fill sends another.
    stale = timezone.now() - timedelta(seconds=jobs.runner_stale_seconds() + 1)
    RunnerSlot.objects.filter(job=job, slot=2).update(heartbeat=stale)
    with django_capture_on_commit_callbacks(execute=True):
        assert runner_slots.fill(job) == [2]
    assert RunnerSlot.objects.get(job=job, slot=2).token != tokens[2]


@pytest.mark.django_db
def test_one_runner_a_slot_a_second_delivery_exits(settings, sent):
    settings.MEDIAOPT_JOB_RUNNERS = 2
    job = new_job(make_assets(1), state=JobState.RUNNING)
    runner_slots.fill(job)
    dispatched = RunnerSlot.objects.get(job=job, slot=1).token

    mine = runner_slots.take(job_id=job.pk, slot=1, dispatched=dispatched)
    assert mine is not None and mine != dispatched
    assert runner_slots.take(job_id=job.pk, slot=1, dispatched=dispatched) is None
    assert runner_slots.take(job_id=job.pk, slot=1, dispatched=None) is None
    assert runner_slots.heartbeat(job_id=job.pk, slot=1, token=mine) == JobState.RUNNING
    assert runner_slots.heartbeat(job_id=job.pk, slot=1, token=dispatched) is None

    runner_slots.let_go(job_id=job.pk, slot=1, token=mine)
    assert RunnerSlot.objects.get(job=job, slot=1).token is None
    assert runner_slots.heartbeat(job_id=job.pk, slot=1, token=mine) is None


@pytest.mark.django_db
def test_one_runner_alone_fills_nothing(settings, sent):
    settings.MEDIAOPT_JOB_RUNNERS = 1
    job = new_job(make_assets(1), state=JobState.RUNNING)
    assert runner_slots.fill(job) == []
    assert not RunnerSlot.objects.exists() and sent == []


@pytest.mark.django_db(transaction=True)
def test_two_runners_work_one_job_at_once_and_charge_each_image_once(
    settings, fake_openai_settings, monkeypatch
):
    """The first runner fills slot 1; the task it sends runs here on a thread of its own.
    Each runner keeps one call in flight, so two at once at the fake server is both
    runners working together, and each finishes some of the images.

    On a cluster each runner is a worker process with its own client, whose pool holds
    one runner's calls; here both share this process's, so its pool holds two."""
    provider.forget_clients()
    monkeypatch.setattr(provider, "connection_limit", lambda: 2)
    settings.MEDIAOPT_JOB_RUNNERS = 2
    settings.MEDIAOPT_JOB_CONCURRENCY = 1
    settings.MEDIAOPT_JOB_BATCH_SIZE = 1
    settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS = 0.05
    fake_openai_settings.latency = 0.4
    assets = make_assets(16)
    finishers: list[int] = []
    real_finish = items.finish_item

    def finish_item(**kwargs):
        finishers.append(threading.get_ident())
        return real_finish(**kwargs)

    monkeypatch.setattr(items, "finish_item", finish_item)
    job = new_job(assets)
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def run(**kwargs) -> None:
        try:
            runner.run_job(**kwargs)
        except BaseException as error:  # surfaced by the test's own thread
            failures.append(error)

    def send(func, job_id, *, runner_token, q_options, slot=0):
        thread = threading.Thread(
            target=run,
            kwargs={"job_id": job_id, "runner_token": uuid.UUID(runner_token), "slot": slot},
        )
        threads.append(thread)
        thread.start()

    monkeypatch.setattr("django_q.tasks.async_task", send)
    jobs.enqueue(job)  # the first runner's task, which fills slot 1
    while any(thread.is_alive() for thread in threads):
        for thread in list(threads):
            thread.join(timeout=60)

    assert failures == []
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert len(threads) == 2  # the first runner and slot 1's, no hand-over in 60 s
    assert fake_openai_settings.max_in_flight == 2  # both runners' calls at once
    assert len(set(finishers)) == 2  # each runner wrote some of the images
    assert fake_openai_settings.request_count == 16
    assert set(job.items.values_list("state", "attempts")) == {(ItemState.SUCCEEDED, 1)}
    assert progress.progress(job).succeeded == 16
    per_asset = MetadataRevision.objects.filter(job=job).values_list("asset_id", flat=True)
    assert sorted(per_asset) == sorted(a.pk for a in assets)
    captures = LedgerEntry.objects.filter(job_id=job.pk, kind=EntryKind.CAPTURE)
    assert captures.count() == 16
    assert RunnerSlot.objects.get(job=job, slot=1).token is None  # let go at the end
    provider.forget_clients()
