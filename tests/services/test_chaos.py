"""Chaos: a 300-image bulk job on PostgreSQL with the Redis broker and two real clusters,
the fake server answering 429, 500, timeouts and malformed output at random, and five
SIGKILLs of a cluster's process group at random moments (a new cluster each time).

At the end every item is final, no image has two AI revisions from the job, credits
captured == AI revisions, no hold is open and the balance never went negative. Printed
(run with -s): the time from each kill to the job's next finished item, and the paid
requests the server answered that were never captured (the calls in flight at a kill,
and the ones the client gave up on).
"""

from __future__ import annotations

import json
import random
import time
from datetime import datetime

import pytest
from django.db.models import Count, Sum
from django.utils import timezone
from django_q.conf import Conf

from billing.models import Account, CreditHold, EntryKind, HoldState, LedgerEntry
from metadata import jobs, progress, recovery
from metadata.models import (
    FINAL_JOB_STATES,
    WORKED_ITEM_STATES,
    ItemState,
    JobItem,
    JobKind,
    MetadataRevision,
)
from tests.fakeopenai import Fault
from tests.services.test_job_clusters import make_assets

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379/7"
IMAGES = 300
KILLS = 5
# At the shipped defaults: four calls in flight, batches of four, 30 s leases; a runner
# is dead after 3 s without a beat here so that recover() acts within the test's pace.
CHAOS_ENV = {
    "REDIS_URL": REDIS_URL,
    "MEDIAOPT_JOB_CONCURRENCY": "4",
    "MEDIAOPT_JOB_BATCH_SIZE": "4",
    "MEDIAOPT_JOB_LEASE_SECONDS": "30",
    "MEDIAOPT_JOB_RUNNER_STALE_SECONDS": "3",
    "MEDIAOPT_JOB_RUN_SECONDS": "20",
    "MEDIAOPT_JOB_MAX_ATTEMPTS": "6",
    "MEDIAOPT_RETRY_BASE_SECONDS": "0.2",
    "LOG_LEVEL": "INFO",
}


def random_faults(rng: random.Random, n: int) -> list:
    menu = [429, 500, Fault.timeout(2), Fault.broken_json()]
    return [rng.choice(menu) if rng.random() < 0.2 else "ok" for _ in range(n)]


def successful_answers(fake) -> int:
    """Answers of valid metadata the server sent (whether or not the client heard them)."""
    count = 0
    for request in list(fake.requests):
        if request.status != 200 or not request.response:
            continue
        try:
            json.loads(request.response["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        count += 1
    return count


def next_finished_after(job, moment: datetime) -> bool:
    return JobItem.objects.filter(
        job=job, state__in=WORKED_ITEM_STATES, updated_at__gt=moment
    ).exists()


@pytest.mark.timeout(300)
def test_chaos_five_kills_of_300_images_end_with_every_item_final_and_paid_once(
    start_cluster, fake_openai, monkeypatch, settings, capsys
):
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    # This process enqueues through the same Redis broker as the clusters (Conf is read
    # once at import, so it is patched rather than overridden).
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    settings.REDIS_URL = REDIS_URL
    for name, value in CHAOS_ENV.items():
        if name.startswith("MEDIAOPT_JOB"):
            setattr(settings, name, float(value))
    rng = random.Random(13)
    fake_openai.latency = 0.2
    fake_openai.script(random_faults(rng, 2 * IMAGES))

    assets = make_assets(IMAGES)
    account = Account.objects.current()
    clusters = [start_cluster(**CHAOS_ENV), start_cluster(**CHAOS_ENV)]
    for cluster in clusters:
        cluster.wait_until_running()
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets]).job
    jobs.enqueue(job)

    lowest_free = account.balance - account.held
    recoveries: list[float] = []
    for kill in range(KILLS):
        time.sleep(rng.uniform(2, 6))
        account.refresh_from_db()
        lowest_free = min(lowest_free, account.balance - account.held)
        victim = clusters.pop(rng.randrange(len(clusters)))
        killed_at = timezone.now()
        started = time.monotonic()
        victim.kill()  # SIGKILL to the whole process group; asserts no survivor
        replacement = start_cluster(**CHAOS_ENV)
        clusters.append(replacement)
        while not next_finished_after(job, killed_at):
            if job.state in FINAL_JOB_STATES:
                break
            recovery.recover()  # what the every-minute schedule does, more often
            time.sleep(0.5)
            job.refresh_from_db()
            assert time.monotonic() - started < 60, f"kill {kill}: no item finished in 60 s"
        recoveries.append(time.monotonic() - started)

    deadline = time.monotonic() + 150
    while job.state not in FINAL_JOB_STATES and time.monotonic() < deadline:
        recovery.recover()
        time.sleep(1)
        job.refresh_from_db()
    counts = progress.progress(job)
    assert job.state == "completed", (job.state, counts)

    items = JobItem.objects.filter(job=job)
    assert not items.filter(state__in=[ItemState.PENDING, ItemState.CLAIMED]).exists()
    revisions = MetadataRevision.objects.filter(job=job, provider="openai")
    per_asset = revisions.values("asset_id").annotate(n=Count("id"))
    assert max(row["n"] for row in per_asset) == 1
    captures = LedgerEntry.objects.filter(job_id=job.pk, kind=EntryKind.CAPTURE)
    captured = -(captures.aggregate(total=Sum("amount"))["total"] or 0)
    assert captured == revisions.count() == counts.succeeded
    assert not CreditHold.objects.filter(state=HoldState.HELD).exists()
    account.refresh_from_db()
    assert account.balance - account.held >= 0 and lowest_free >= 0
    answered = successful_answers(fake_openai)
    wasted = answered - captured
    assert wasted >= 0

    with capsys.disabled():
        print()
        for kill, seconds in enumerate(recoveries, 1):
            print(f"kill {kill}: next finished item {seconds:.1f} s after the SIGKILL")
        print(
            f"{counts.succeeded} succeeded, {counts.failed} failed of {counts.total}; "
            f"{captured} captured; {answered} valid answers sent; {wasted} never captured "
            f"({wasted / KILLS:.1f} per kill, timeouts included)"
        )
    assert max(recoveries) < 30
