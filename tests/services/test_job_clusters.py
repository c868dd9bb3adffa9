"""The job engine under real qcluster processes on PostgreSQL: faults, deaths, freezes and
two clusters racing for one job."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter

import pytest
from django.db.models import Count
from django_q.tasks import async_task

from mediaopt.library import images
from metadata import intake, jobs, progress, recovery
from metadata.models import ItemState, JobKind, JobState, MetadataRevision, RegenerationJob
from tests import factories
from tests.fakeopenai import Fault
from tests.job_invariants import miscounted

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "brown", "gray"]
POISON = "POISON-3b1d"


def make_assets(n: int, *, poison_last: bool = False):
    assets = []
    for i in range(n):
        comment = POISON if poison_last and i == n - 1 else None
        data = factories.jpeg(40 + i, 30, color=COLOURS[i % len(COLOURS)], comment=comment)
        assets.append(intake.import_file(source=data, original_name=f"IMG_{i:04}.jpg").asset)
    return assets


def import_job(assets) -> RegenerationJob:
    job = jobs.create_job(kind=JobKind.IMPORT, asset_ids=[a.pk for a in assets]).job
    jobs.enqueue(job)  # outside a transaction: the task is sent at once
    return job


def wait_for(job, *, seconds: float, recover: bool = False, until=None) -> RegenerationJob:
    """Poll until the job ends (or ``until`` holds), calling recover() like the schedule."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if until is not None and until(job):
            return job
        if until is None and job.state in {JobState.COMPLETED, JobState.FAILED}:
            return job
        if recover:
            recovery.recover()
        time.sleep(0.5)
    raise AssertionError(f"job {job.pk} still {job.state}: {progress.progress(job)}")


def preview_owner(assets) -> dict[bytes, int]:
    owner = {}
    for asset in assets:
        with asset.file.open("rb") as handle:
            owner[images.preview(handle)] = asset.pk
    return owner


def statuses_per_asset(fake, assets) -> dict[int, list[int]]:
    owner = preview_owner(assets)
    seen: dict[int, list[int]] = {asset.pk: [] for asset in assets}
    for request in list(fake.requests):
        seen[owner[request.image]].append(request.status)
    return seen


def ai_revisions_per_asset(job) -> Counter:
    rows = (
        MetadataRevision.objects.filter(job=job, provider="openai")
        .values("asset_id")
        .annotate(n=Count("id"))
    )
    return Counter({row["asset_id"]: row["n"] for row in rows})


@pytest.mark.timeout(90)
def test_an_import_job_of_40_images_completes_through_429s_500s_and_timeouts(
    start_cluster, fake_openai
):
    faults = [429, 500, Fault.timeout(3), 500, 429, "ok", 500, Fault.timeout(3)] * 3
    fake_openai.script(faults)
    assets = make_assets(40)
    cluster = start_cluster()
    job = import_job(assets)

    wait_for(job, seconds=60)

    assert job.state == JobState.COMPLETED, cluster.output()
    items = list(job.items.all())
    assert all(item.state == ItemState.SUCCEEDED for item in items), [
        (item.asset_id, item.state, item.error) for item in items
    ]
    for asset_id, answered in statuses_per_asset(fake_openai, assets).items():
        # A request the client gave up on is answered later (status 200), so only the
        # last request may be the one that counted: none came after it.
        assert answered and answered[-1] == 200, (asset_id, answered)
    assert set(ai_revisions_per_asset(job).values()) == {1}


@pytest.mark.timeout(120)
def test_a_cluster_killed_mid_job_leaves_no_survivor_and_a_new_one_finishes_the_job(
    start_cluster, fake_openai
):
    fake_openai.latency = 0.15
    fake_openai.script([500, 429] * 3)
    assets = make_assets(40)
    first = start_cluster()
    job = import_job(assets)
    wait_for(job, seconds=40, until=lambda j: progress.progress(j).succeeded >= 8)

    first.kill()  # asserts no pid of its process group survives
    done_at_kill = progress.progress(job).succeeded
    assert done_at_kill < 40

    second = start_cluster()
    wait_for(job, seconds=60, recover=True)

    assert job.state == JobState.COMPLETED, second.output()
    assert progress.progress(job).succeeded == 40
    assert miscounted() == []  # the job row's counts, through a kill -9
    per_asset = ai_revisions_per_asset(job)
    assert len(per_asset) == 40 and max(per_asset.values()) == 1, per_asset


@pytest.mark.timeout(90)
def test_a_poison_image_that_kills_its_worker_fails_after_its_attempts(start_cluster):
    assets = make_assets(6, poison_last=True)
    poison = assets[-1]
    cluster = start_cluster(
        MEDIAOPT_TEST_POISON=POISON, MEDIAOPT_JOB_MAX_ATTEMPTS="2", MEDIAOPT_JOB_BATCH_SIZE="1"
    )
    job = import_job(assets)

    wait_for(job, seconds=70, recover=True)

    assert job.state == JobState.COMPLETED, cluster.output()
    item = job.items.get(asset=poison)
    assert item.state == ItemState.FAILED and item.attempts == 2
    assert item.error == "gave up after 2 attempts (the worker died while processing this image)"
    assert progress.progress(job).succeeded == 5
    assert miscounted() == []  # the exhausted item's failure counted once
    assert cluster.process.poll() is None  # the cluster lived on; only its workers died
    assert "reincarnated" in cluster.output().lower(), cluster.output()


@pytest.mark.timeout(90)
def test_two_clusters_on_one_job_never_claim_an_image_twice(start_cluster, fake_openai):
    fake_openai.latency = 0.05
    assets = make_assets(40)
    bulk = start_cluster(MEDIAOPT_JOB_BATCH_SIZE="1", LOG_LEVEL="INFO")
    interactive = start_cluster(
        MEDIAOPT_JOB_BATCH_SIZE="1", LOG_LEVEL="INFO", cluster_name="interactive"
    )
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets]).job
    jobs.enqueue(job)
    # More deliveries of a runner on the same job, on both queues: with a live runner
    # they exit at once instead of racing it for every claim.
    for queue in ["bulk", "interactive", "interactive"]:
        async_task("metadata.tasks.run_job", job.pk, q_options={"cluster": queue})

    wait_for(job, seconds=60)

    assert job.state == JobState.COMPLETED
    assert set(job.items.values_list("state", "attempts")) == {(ItemState.SUCCEEDED, 1)}
    assert {k: len(v) for k, v in statuses_per_asset(fake_openai, assets).items()} == {
        asset.pk: 1 for asset in assets
    }
    assert set(ai_revisions_per_asset(job).values()) == {1}
    assert miscounted() == []  # two clusters' writes to one job row, none lost
    # The extra deliveries reached the clusters and left the job to its one runner.
    logs = bulk.output() + interactive.output()
    assert len(re.findall(rf"job {job.pk} has a live runner; this delivery exits", logs)) >= 1
    worked = re.findall(rf"job {job.pk}: this runner worked (\d+) item", logs)
    assert sum(map(int, worked)) == 40, logs


@pytest.mark.timeout(120)
def test_a_worker_frozen_past_its_lease_writes_nothing_when_it_wakes(start_cluster, fake_openai):
    fake_openai.latency = 1.0
    assets = make_assets(6)
    frozen = start_cluster(MEDIAOPT_JOB_BATCH_SIZE="1", MEDIAOPT_WORKERS="1", OPENAI_TIMEOUT="5")
    job = import_job(assets)
    deadline = time.monotonic() + 30
    while fake_openai.request_count == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    frozen.signal_group(signal.SIGSTOP)  # mid-request, holding a claimed item
    [held] = job.items.filter(state=ItemState.CLAIMED)

    time.sleep(5)  # past the 4 s lease
    rescuer = start_cluster(MEDIAOPT_JOB_BATCH_SIZE="1", OPENAI_TIMEOUT="5")
    wait_for(job, seconds=60, recover=True)
    assert job.state == JobState.COMPLETED, rescuer.output()
    held.refresh_from_db()
    assert held.state == ItemState.SUCCEEDED and held.attempts == 2
    before = list(MetadataRevision.objects.filter(job=job).values_list("id", flat=True))

    frozen.signal_group(signal.SIGCONT)
    # Its answer is waiting in the socket; it checks it (the first check in a process
    # loads the language detector, a few seconds) and tries to write it.
    lost = f"Lost the lease on job item {held.pk}"
    deadline = time.monotonic() + 30
    while lost not in frozen.output() and time.monotonic() < deadline:
        time.sleep(0.2)

    after = list(MetadataRevision.objects.filter(job=job).values_list("id", flat=True))
    assert after == before
    assert lost in frozen.output()
    assert set(ai_revisions_per_asset(job).values()) == {1}


LIMIT = 60


@pytest.mark.timeout(120)
def test_two_runners_on_two_clusters_work_one_job_at_once_within_the_shared_limit(
    start_cluster, fake_openai
):
    """MEDIAOPT_JOB_RUNNERS=2 (PostgreSQL's default): the job's first runner fills slot 1,
    whose task either cluster may take. Each runner keeps at most two calls in flight, so
    more than two at the fake at once is both at work (the second starts seconds after the
    first: a new worker builds its language detector); the shared limiter (60 a minute)
    holds their sum; claims under SKIP LOCKED give no image to both."""
    from metadata.models import RunnerSlot, Settings

    fake_openai.latency = 0.5
    Settings.objects.current()
    Settings.objects.update(requests_per_minute=LIMIT)
    assets = make_assets(80)
    two = {"MEDIAOPT_JOB_CONCURRENCY": "2", "MEDIAOPT_JOB_RUNNERS": "2", "LOG_LEVEL": "INFO"}
    first, second = start_cluster(**two), start_cluster(**two)
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets]).job
    jobs.enqueue(job)

    deadline = time.monotonic() + 40
    while fake_openai.request_count < LIMIT and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(8)  # the rest wait for the window: nothing more may reach the fake
    arrivals = sorted(request.at for request in list(fake_openai.requests))
    jobs.cancel(job)
    wait_for(job, seconds=30, until=lambda j: not j.items.filter(state=ItemState.CLAIMED).exists())

    logs = first.output() + second.output()
    assert fake_openai.max_in_flight > 2, logs  # two runners' calls at once
    assert len(arrivals) == LIMIT, logs  # the limit, shared by both runners
    assert RunnerSlot.objects.filter(job=job, slot=1).exists()
    calls = statuses_per_asset(fake_openai, assets)
    assert all(len(statuses) <= 1 for statuses in calls.values()), calls  # disjoint claims
    done = job.items.filter(state=ItemState.SUCCEEDED)
    assert done.count() == LIMIT and set(done.values_list("attempts", flat=True)) == {1}
    assert set(ai_revisions_per_asset(job).values()) == {1}
    assert miscounted() == []
