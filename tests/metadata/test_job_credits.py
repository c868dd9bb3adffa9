"""Credits around a job's paid calls: held before, captured with the revision, released on
any failure; a job out of credits pauses and resumes without charging anything twice."""

from __future__ import annotations

import logging

import pytest
from django.core import serializers
from django_q.conf import Conf
from django_q.models import OrmQ

from billing import crypto, ledger
from billing.models import Account, CreditHold, EntryKind, HoldState, LedgerEntry
from mediaopt.library.fields import Source
from metadata import intake, items, jobs, progress, recovery, runner
from metadata.models import ItemState, JobKind, JobState, MetadataRevision
from tests import factories
from tests.billing.helpers import funded_account

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


@pytest.fixture
def sync_mode(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture(autouse=True)
def quick(settings):
    settings.MEDIAOPT_JOB_MAX_ATTEMPTS = 3
    settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS = 0.05
    settings.MEDIAOPT_RETRY_BASE_SECONDS = 0.0
    settings.OPENAI_TIMEOUT = 1.0


def make_assets(n: int):
    return [
        intake.import_file(
            source=factories.jpeg(40 + i, 30, color=COLOURS[i % len(COLOURS)]),
            original_name=f"IMG_{i:04}.jpg",
        ).asset
        for i in range(n)
    ]


def run_bulk(assets) -> jobs.RegenerationJob:
    creation = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets])
    runner.run_inline(creation.job)
    creation.job.refresh_from_db()
    return creation.job


def spent(account: Account) -> int:
    return -sum(
        LedgerEntry.objects.filter(account=account, kind=EntryKind.CAPTURE).values_list(
            "amount", flat=True
        )
    )


def test_credits_spent_captures_successful_answers_and_ai_revisions_agree(
    fake_openai_settings,
):
    account = Account.objects.current()
    before = ledger.balance(account)
    assets = make_assets(6)
    # Two images fail once each before succeeding; a third fails for good.
    fake_openai_settings.script([500, "ok", 500, "ok", "ok", "ok", 500, 500, 500])

    job = run_bulk(assets)

    ok_answers = sum(1 for r in fake_openai_settings.requests if r.status == 200)
    captures = LedgerEntry.objects.filter(kind=EntryKind.CAPTURE, job_id=job.pk).count()
    ai_revisions = MetadataRevision.objects.filter(job=job, alt_text_source=Source.AI).count()
    account.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert before - ledger.balance(account) == captures == ok_answers == ai_revisions
    assert progress.progress(job).succeeded + progress.progress(job).failed == 6
    assert account.held == 0
    assert not CreditHold.objects.filter(state=HoldState.HELD).exists()


def test_a_failure_costs_nothing(fake_openai_settings):
    account = Account.objects.current()
    before = ledger.balance(account)
    fake_openai_settings.always(500)

    job = run_bulk(make_assets(2))

    account.refresh_from_db()
    assert progress.progress(job).failed == 2
    assert ledger.balance(account) == before and account.held == 0
    assert CreditHold.objects.filter(state=HoldState.RELEASED).count() == 2 * 3


def test_a_broken_image_never_holds_credits(fake_openai_settings):
    [asset] = make_assets(1)
    with open(asset.file.path, "wb") as handle:
        handle.write(b"\xff\xd8\xff not a jpeg")
    job = run_bulk([asset])
    assert progress.progress(job).failed == 1
    assert not CreditHold.objects.exists()
    assert fake_openai_settings.request_count == 0


@pytest.mark.unfunded
def test_out_of_credits_pauses_then_a_grant_and_resume_charge_each_image_once(
    fake_openai_settings, sync_mode, django_capture_on_commit_callbacks
):
    account = funded_account(credits=3, plan="agency")
    assets = make_assets(5)
    creation = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets])
    job = creation.job
    runner.run_inline(job)
    job.refresh_from_db()

    assert job.state == JobState.PAUSED
    assert "credit" in job.pause_reason.lower()
    assert progress.progress(job).succeeded == 3 and progress.progress(job).pending == 2
    assert set(job.items.filter(state=ItemState.PENDING).values_list("attempts", flat=True)) == {0}

    ledger.grant(account=account, amount=10, reason="top-up")
    with django_capture_on_commit_callbacks(execute=True):
        jobs.resume(job)
    job.refresh_from_db()

    assert job.state == JobState.COMPLETED
    assert spent(account) == 5
    assert fake_openai_settings.request_count == 5
    assert LedgerEntry.objects.filter(kind=EntryKind.CAPTURE).count() == 5


def test_a_worker_killed_between_hold_and_capture_loses_nothing(fake_openai_settings):
    """The hold outlives its worker only until the lease expires; recover() releases it."""
    account = Account.objects.current()
    [asset] = make_assets(1)
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[asset.pk]).job
    jobs.enqueue(job)
    jobs.start(job)
    [item] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=0.01)
    ledger.hold(
        account=account,
        amount=1,
        idempotency_key=ledger.hold_key(item_id=item.id, attempt=item.attempts),
        expires_at=jobs.timezone.now(),
    )
    account.refresh_from_db()
    assert account.held == 1

    recovery.recover(now=jobs.timezone.now() + jobs.timedelta(seconds=1))

    account.refresh_from_db()
    assert account.held == 0 and spent(account) == 0
    assert not LedgerEntry.objects.filter(kind=EntryKind.CAPTURE).exists()


CANARY = "sk-canary-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@pytest.mark.unfunded
def test_a_customer_key_stays_out_of_task_payloads_logs_and_dumps(
    fake_openai_settings, caplog, django_capture_on_commit_callbacks
):
    account = funded_account(credits=0, plan="agency", mode="byok")
    crypto.set_api_key(account=account, key=CANARY, actor=None)
    fake_openai_settings.api_key = CANARY
    [asset] = make_assets(1)
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "django_q", "metadata", "billing"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    job = jobs.create_job(kind=JobKind.SINGLE, asset_ids=[asset.pk]).job
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)  # the ORM broker stores the signed, pickled task
    payloads = list(OrmQ.objects.values_list("payload", flat=True))
    OrmQ.objects.all().delete()
    job.refresh_from_db()
    runner.run_job(job_id=job.pk, runner_token=job.runner_token)  # what the task carried

    asset.refresh_from_db()
    assert asset.alt_text_source == Source.AI  # the key really was used
    assert payloads and all(CANARY not in str(p) for p in payloads)
    assert CANARY not in caplog.text
    dump = serializers.serialize("json", Account.objects.all())
    assert CANARY not in dump and CANARY[-4:] in dump
