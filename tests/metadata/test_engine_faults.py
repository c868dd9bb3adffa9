"""The job engine under cancel, poison images, lost runners, skewed clocks, deleted images
and failing stores, at the shipped defaults (four calls in flight, batches of four).

Each test drives the real runner against the fake OpenAI server over HTTP, with real
JPEG files; the invariant checker (tests/conftest.py) runs after every one of them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from billing import ledger
from billing.models import Account, CreditHold, HoldState
from mediaopt.library.models import MediaAsset
from metadata import (
    generation,
    items,
    jobs,
    ratelimit,
    ratelimit_backends,
    recovery,
    runner,
    steps,
    tasks,
)
from metadata.models import ItemState, JobItem, JobState, RegenerationJob
from metadata.ratelimit import Limiter
from metadata.ratelimit_backends import DatabaseBackend, Limits
from tests import factories
from tests.fakeopenai import Fault
from tests.metadata.test_jobs import item_of, make_assets, new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def shipped_defaults(settings):
    """The shipped concurrency and batch size (tests/conftest.py forces one call at a time
    for the tests that count requests exactly)."""
    settings.MEDIAOPT_JOB_CONCURRENCY = 4
    settings.MEDIAOPT_JOB_BATCH_SIZE = 4
    settings.MEDIAOPT_JOB_MAX_ATTEMPTS = 3
    settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS = 0.05
    settings.MEDIAOPT_RETRY_BASE_SECONDS = 0.0


def assets_free(assets) -> bool:
    return not JobItem.objects.active().filter(asset__in=[a.pk for a in assets]).exists()


# -- 1. cancel while calls are in flight --------------------------------------------------


def test_cancel_while_calls_are_in_flight_ends_every_item_whatever_the_calls_answer(
    fake_openai_settings, monkeypatch
):
    assets = make_assets(4)
    job = new_job(assets)
    fake_openai_settings.script([500, 429, Fault.broken_json(), 500])
    real_conclude = steps.conclude

    def cancel_then_conclude(run, ready, hold_key, call):
        if RegenerationJob.objects.get(pk=job.pk).state != JobState.CANCELLED:
            jobs.cancel(RegenerationJob.objects.get(pk=job.pk))  # the user pressed Cancel
        return real_conclude(run, ready, hold_key, call)

    monkeypatch.setattr(steps, "conclude", cancel_then_conclude)
    runner.run_inline(job)

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert fake_openai_settings.request_count == 4  # all four were in flight together
    states = set(job.items.values_list("state", flat=True))
    assert states == {ItemState.CANCELLED}
    # The images are free: a later job takes them instead of calling them busy.
    assert assets_free(assets)
    assert jobs.create_job(kind="bulk", asset_ids=[a.pk for a in assets]).busy_count == 0


def test_recover_cancels_a_pending_item_left_under_a_cancelled_job():
    # What a give-back racing a cancel used to leave: recover() must not ignore it.
    assets = make_assets(2)
    job = new_job(assets)
    RegenerationJob.objects.filter(pk=job.pk).update(state=JobState.CANCELLED)
    recovery.recover()
    assert set(job.items.values_list("state", flat=True)) == {ItemState.CANCELLED}
    assert assets_free(assets)


# -- 2. a poison image fails alone ---------------------------------------------------------


class WorkerDied(BaseException):
    """What a SIGKILL or an out-of-memory death looks like to the items: nothing runs on."""


def test_a_poison_image_fails_alone_with_the_true_reason_and_its_batch_mates_succeed(
    fake_openai_settings, monkeypatch
):
    assets = make_assets(4)
    poison = assets[0]  # first in the batch: its mates are never opened while it kills
    job = new_job(assets)
    real_request = generation.ai_request

    def dies_on_poison(*, asset, row, options):
        if asset.pk == poison.pk:
            raise WorkerDied
        return real_request(asset=asset, row=row, options=options)

    monkeypatch.setattr(generation, "ai_request", dies_on_poison)
    for death in range(3):  # the shipped maximum of attempts, one death each
        with pytest.raises(WorkerDied):
            if death == 0:
                runner.run_inline(job)
            else:
                runner._run(job_id=job.pk, to_the_end=True)
        recovery.recover(now=timezone.now() + timedelta(seconds=jobs.lease_seconds() + 1))
    runner._run(job_id=job.pk, to_the_end=True)

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    poisoned = JobItem.objects.get(job=job, asset=poison)
    assert poisoned.state == ItemState.FAILED and "worker died" in poisoned.error
    assert poisoned.attempts == 3
    mates = JobItem.objects.filter(job=job).exclude(asset=poison)
    assert set(mates.values_list("state", flat=True)) == {ItemState.SUCCEEDED}
    assert max(mates.values_list("attempts", flat=True)) == 1
    assert fake_openai_settings.request_count == 3  # never a call for the poison image


# -- 3. a resumed job whose runner was lost ------------------------------------------------


def test_recover_completes_a_resumed_job_whose_last_items_ended_before_its_runner_came(
    django_capture_on_commit_callbacks, monkeypatch
):
    lost = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: lost.append(a))
    assets = make_assets(2)
    job = new_job(assets, state=JobState.RUNNING)
    batch = items.claim(job_id=job.pk, batch_size=2, lease_seconds=60)
    jobs.pause(job, reason="a person paused it")
    for item in batch:  # the calls in flight at the pause are recorded, as designed
        JobItem.objects.filter(pk=item.id).update(
            state=ItemState.SUCCEEDED, lease_token=None, lease_expires_at=None
        )
    factories.recount_jobs(job)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.resume(job)  # its runner task is lost (the Redis broker is at-most-once)
    assert len(lost) == 1

    report = recovery.recover(now=timezone.now() + timedelta(minutes=10))
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED and report.completed == [job.pk]


# -- 4. the shared limiter across skewed host clocks --------------------------------------

_LIMITER_PROCESS = """
import os, sys, time
shift = float(sys.argv[1])
real_time = time.time
time.time = lambda: real_time() + shift  # this host's clock, off by ``shift`` seconds
import django
django.setup()
from metadata.ratelimit import Limiter
from metadata.ratelimit_backends import DatabaseBackend, Limits
limiter = Limiter(key="skewed", backend=DatabaseBackend(), limits=lambda: Limits(10, 0))
print(sum(1 for _ in range(15) if limiter.try_acquire(tokens=1) <= 0))
"""


def _limiter_env(database: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "PYTHONPATH": str(ROOT),
    }


def test_two_processes_with_clocks_30_seconds_apart_admit_one_budget_between_them(tmp_path):
    """Host A uses the minute's budget; 31 s later host B, whose clock runs 30 s ahead,
    asks. By B's own clock A's calls are over a minute old: counted by the host clock,
    B gets a second budget within 31 s; counted by the store's clock, it gets nothing."""
    database = tmp_path / "limiter.sqlite3"
    env = _limiter_env(database)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    admitted = []
    first_done = 0.0
    for shift in (0.0, 30.0):
        if shift:
            time.sleep(max(first_done + 31 - time.monotonic(), 0))
        done = subprocess.run(
            [sys.executable, "-c", _LIMITER_PROCESS, str(shift)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        admitted.append(int(done.stdout.strip().splitlines()[-1]))
        first_done = first_done or time.monotonic()
    assert admitted[0] == 10
    assert sum(admitted) <= 10, admitted  # one budget per window across both hosts


# -- 5. no call after the runner decided to stop -------------------------------------------


def test_no_call_is_sent_after_a_rejected_key_paused_the_job(fake_openai_settings, monkeypatch):
    assets = make_assets(2)
    job = new_job(assets)
    fake_openai_settings.script([Fault.unauthorized()])
    answers = iter([0.0, 0.5])  # the second call must wait: meanwhile the 401 comes back

    def scripted(self, *, tokens):
        return next(answers, 0.0)

    monkeypatch.setattr(ratelimit.Limiter, "try_acquire", scripted)
    runner.run_inline(job)

    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    assert fake_openai_settings.request_count == 1
    assert not CreditHold.objects.filter(state=HoldState.HELD).exists()
    assert CreditHold.objects.count() == 1  # no second credit held either


# -- 6. one runner per job -----------------------------------------------------------------


def test_a_duplicate_delivery_of_the_runner_task_exits_at_once(
    fake_openai_settings, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: sent.append((a, k)))
    assets = make_assets(6)
    job = new_job(assets)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)
    [(args, kwargs)] = sent
    delivery = {k: v for k, v in kwargs.items() if k != "q_options"}
    real_claim = items.claim
    duplicate_claims = []
    inside_duplicate = threading.local()

    def claim(**kw):
        if getattr(inside_duplicate, "on", False):
            duplicate_claims.append(kw)
        return real_claim(**kw)

    monkeypatch.setattr(items, "claim", claim)
    real_conclude = steps.conclude
    delivered_twice = []

    def conclude(run, ready, hold_key, call):
        if not delivered_twice:
            delivered_twice.append(True)
            inside_duplicate.on = True
            try:
                tasks.run_job(*args[1:], **delivery)  # the broker delivers it again
            finally:
                inside_duplicate.on = False
        return real_conclude(run, ready, hold_key, call)

    monkeypatch.setattr(steps, "conclude", conclude)
    tasks.run_job(*args[1:], **delivery)

    job.refresh_from_db()
    assert delivered_twice and duplicate_claims == []
    assert job.state == JobState.COMPLETED
    assert fake_openai_settings.request_count == 6  # each image asked once


# -- 7. short leases renewed by the heartbeat, holds with them -----------------------------


def test_a_dead_runner_is_noticed_in_seconds_and_its_job_gets_a_new_one(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    assert settings.MEDIAOPT_JOB_LEASE_SECONDS <= 30
    assert settings.MEDIAOPT_JOB_RUNNER_STALE_SECONDS <= 10
    sent = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: sent.append(a))
    job = new_job(make_assets(2), state=JobState.RUNNING)
    # Its runner's host was killed 15 s ago: no beat since.
    died = timezone.now() - timedelta(seconds=15)
    RegenerationJob.objects.filter(pk=job.pk).update(runner_heartbeat=died)
    with django_capture_on_commit_callbacks(execute=True):
        report = recovery.recover()
    assert report.requeued == [job.pk] and len(sent) == 1


def test_the_heartbeat_renews_the_leases_and_holds_of_the_items_in_flight():
    job = new_job(make_assets(1), state=JobState.RUNNING)
    [item] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=5)
    item = items.open_item(item=item, lease_seconds=5)
    soon = timezone.now() + timedelta(seconds=5)
    ledger.hold(
        account=Account.objects.current(),
        amount=1,
        idempotency_key="hold:heartbeat",
        expires_at=soon,
        job_id=job.pk,
        item_id=item.id,
    )
    assert items.extend_leases(job_id=job.pk, lease_tokens=[item.lease_token], seconds=60) == 1
    later = timezone.now() + timedelta(seconds=50)
    assert item_of(job).lease_expires_at > later
    assert CreditHold.objects.get(idempotency_key="hold:heartbeat").expires_at > later


@pytest.mark.django_db(transaction=True)
def test_a_call_slower_than_the_lease_keeps_its_item_and_is_not_redone(
    fake_openai_settings, settings
):
    settings.MEDIAOPT_JOB_LEASE_SECONDS = 2
    settings.MEDIAOPT_JOB_CONCURRENCY = 1
    [asset] = make_assets(1)
    job = new_job([asset])
    fake_openai_settings.latency = 4.0  # twice the lease

    def recover_meanwhile():
        try:
            time.sleep(3.0)  # the first lease has run out by now
            recovery.recover()
        finally:
            connection.close()

    other_host = threading.Thread(target=recover_meanwhile)
    other_host.start()
    runner.run_inline(job)
    other_host.join()

    item = item_of(job)
    assert item.state == ItemState.SUCCEEDED and item.attempts == 1
    assert fake_openai_settings.request_count == 1


# -- 8. an image deleted during its job ------------------------------------------------------


def test_an_image_deleted_during_the_job_does_not_stop_the_runner(
    fake_openai_settings, monkeypatch
):
    assets = make_assets(4)
    job = new_job(assets)
    real_claim = items.claim
    deleted = []

    def claim_then_delete(**kw):
        batch = real_claim(**kw)
        if batch and not deleted:
            deleted.append(batch[1].asset_id)
            MediaAsset.objects.filter(pk=batch[1].asset_id).delete()  # from the library
        return batch

    monkeypatch.setattr(items, "claim", claim_then_delete)
    runner.run_inline(job)

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    left = JobItem.objects.filter(job=job)
    assert not left.filter(asset_id__in=deleted).exclude(state=ItemState.CANCELLED).exists()
    assert set(left.exclude(asset_id__in=deleted).values_list("state", flat=True)) == {
        ItemState.SUCCEEDED
    }
    assert fake_openai_settings.request_count == 3


def test_a_deleted_image_whose_item_survives_is_cancelled_as_image_deleted(
    fake_openai_settings, monkeypatch
):
    assets = make_assets(2)
    job = new_job(assets)
    gone = assets[0].pk
    real_filter = MediaAsset.objects.filter

    def as_if_deleted(*args, **kwargs):
        if kwargs == {"pk": gone}:
            return real_filter(pk__in=[])
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(MediaAsset.objects, "filter", as_if_deleted)
    runner.run_inline(job)
    item = JobItem.objects.get(job=job, asset_id=gone)
    assert (item.state, item.error) == (ItemState.CANCELLED, "image deleted")
    assert JobItem.objects.get(job=job, asset_id=assets[1].pk).state == ItemState.SUCCEEDED


# -- 9. the limiter's database errors ------------------------------------------------------


def test_a_limiter_database_error_that_is_not_a_lock_timeout_fails_the_call_as_transient(
    monkeypatch, caplog
):
    limiter = Limiter(key="broken", backend=DatabaseBackend(), limits=lambda: Limits(10, 0))

    def dropped(key):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(DatabaseBackend, "_lock_control", staticmethod(dropped))
    with (
        caplog.at_level(logging.WARNING, logger="metadata.ratelimit_backends"),
        pytest.raises(ratelimit_backends.ProviderError) as raised,
    ):
        limiter.try_acquire(tokens=1)
    assert raised.value.retryable
    assert "server closed the connection" in caplog.text


def test_a_lock_timeout_is_still_tried_again_shortly(monkeypatch):
    limiter = Limiter(key="busy", backend=DatabaseBackend(), limits=lambda: Limits(10, 0))

    def locked(key):
        raise OperationalError("database is locked")

    monkeypatch.setattr(DatabaseBackend, "_lock_control", staticmethod(locked))
    assert 0 < limiter.try_acquire(tokens=1) < 1


def test_a_job_whose_limiter_store_fails_retries_its_items_later_and_finishes(
    fake_openai_settings, monkeypatch
):
    assets = make_assets(2)
    job = new_job(assets)
    failures = iter([ratelimit_backends.LimiterUnavailable("connection reset")])

    def flaky(self, *, tokens):
        error = next(failures, None)
        if error is not None:
            raise error
        return 0.0

    monkeypatch.setattr(ratelimit.Limiter, "try_acquire", flaky)
    runner.run_inline(job)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert set(job.items.values_list("state", flat=True)) == {ItemState.SUCCEEDED}
    assert fake_openai_settings.request_count == 2
