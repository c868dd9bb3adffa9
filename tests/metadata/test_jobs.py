"""jobs.py on SQLite: every transition, claims and leases, recovery, the cluster settings.

The runner working whole jobs is in test_runner.py, the progress reads in test_progress.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from mediaopt.library import images
from mediaopt.library.models import MediaAsset
from metadata import intake, items, jobs, recovery
from metadata.apps import RECOVER_SCHEDULE, create_schedules
from metadata.models import (
    FINAL_JOB_STATES,
    ItemState,
    JobItem,
    JobKind,
    JobQueue,
    JobState,
    MetadataRevision,
    RegenerationJob,
)
from metadata.providers.base import DescribeResult
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "brown", "gray"]


def make_assets(n: int, *, start: int = 0) -> list[MediaAsset]:
    """Real imported images, each different (so each preview is too)."""
    assets = []
    for i in range(start, start + n):
        data = factories.jpeg(40 + i, 30, color=COLOURS[i % len(COLOURS)])
        outcome = intake.import_file(source=data, original_name=f"IMG_{i:04}.jpg")
        assets.append(outcome.asset)
    return assets


def new_job(assets, *, kind=JobKind.BULK, state: str | None = None, **kwargs):
    """A job with a pending item per asset, put straight into ``state``; a finished job's
    items are cancelled, as finishing it would have."""
    job = jobs.create_job(kind=kind, asset_ids=[a.pk for a in assets], **kwargs).job
    if state:
        RegenerationJob.objects.filter(pk=job.pk).update(state=state)
        if state in FINAL_JOB_STATES:
            job.items.filter(state=ItemState.PENDING).update(state=ItemState.CANCELLED)
        factories.recount_jobs(job)
        job.refresh_from_db()
    return job


def item_of(job) -> JobItem:
    return JobItem.objects.get(job=job)


def set_item(item: JobItem, **fields) -> JobItem:
    JobItem.objects.filter(pk=item.pk).update(**fields)
    factories.recount_jobs(item.job)
    item.refresh_from_db()
    return item


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


# -- job transitions ---------------------------------------------------------------------

JOB_MOVES = {
    # function -> (states it starts from, state it reaches)
    "enqueue": ({JobState.DRAFT, JobState.PREPARING}, JobState.QUEUED),
    "begin_preparing": ({JobState.DRAFT}, JobState.PREPARING),
    "start": ({JobState.QUEUED}, JobState.RUNNING),
    "pause": ({JobState.QUEUED, JobState.RUNNING}, JobState.PAUSED),
    "resume": ({JobState.PAUSED}, JobState.QUEUED),
    "cancel": (
        {JobState.DRAFT, JobState.PREPARING, JobState.QUEUED, JobState.RUNNING, JobState.PAUSED},
        JobState.CANCELLED,
    ),
    "fail": (
        {JobState.DRAFT, JobState.PREPARING, JobState.QUEUED, JobState.RUNNING},
        JobState.FAILED,
    ),
}


def call_move(name: str, job) -> None:
    function = getattr(jobs, name)
    if name == "pause":
        function(job, reason="because")
    elif name == "fail":
        function(job, reason="could not run")
    else:
        function(job)


def test_the_transition_table_is_exactly_what_the_functions_do():
    edges = {(start, target) for starts, target in JOB_MOVES.values() for start in starts}
    edges.add((JobState.RUNNING, JobState.COMPLETED))  # complete_if_done
    table = {
        (start, target) for start, targets in jobs.JOB_TRANSITIONS.items() for target in targets
    }
    assert edges == table


@pytest.mark.parametrize("name", JOB_MOVES)
@pytest.mark.parametrize("start", JobState.values)
def test_job_moves_only_from_its_allowed_states(name, start):
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=start)
    starts, target = JOB_MOVES[name]
    if start in starts:
        call_move(name, job)
        job.refresh_from_db()
        assert job.state == target
    else:
        with pytest.raises(jobs.IllegalTransition):
            call_move(name, job)
        job.refresh_from_db()
        assert job.state == start


@pytest.mark.parametrize("start", JobState.values)
def test_only_a_running_job_without_open_items_completes(start):
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=start)
    set_item(item_of(job), state=ItemState.SUCCEEDED)
    assert jobs.complete_if_done(job) is (start == JobState.RUNNING)
    job.refresh_from_db()
    assert job.state == (JobState.COMPLETED if start == JobState.RUNNING else start)


@pytest.mark.parametrize("open_state", [ItemState.PENDING, ItemState.CLAIMED])
def test_a_job_with_open_items_does_not_complete(open_state):
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    lease = timezone.now() + timedelta(minutes=1)  # a claimed item is always leased
    set_item(item_of(job), state=open_state, lease_expires_at=lease)
    assert not jobs.complete_if_done(job)
    assert job.state == JobState.RUNNING


def test_enqueue_and_resume_send_one_runner_on_the_jobs_queue_after_commit(
    django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: sent.append((a, k)))
    [asset] = factories.bare_assets(1)
    job = new_job([asset], queue=JobQueue.INTERACTIVE)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)
    job.refresh_from_db()
    assert job.runner_token is not None  # only the task sent may take the job over
    assert sent == [
        (
            ("metadata.tasks.run_job", job.pk),
            {
                "runner_token": job.runner_token.hex,
                "q_options": {"cluster": "interactive", "task_name": f"job-{job.pk}"},
            },
        )
    ]
    with pytest.raises(jobs.IllegalTransition):  # confirming twice makes one run
        jobs.enqueue(job)


def test_cancel_cancels_pending_items_and_leaves_a_claimed_one_to_its_runner():
    a, b = factories.bare_assets(2)
    job = new_job([a, b], state=JobState.RUNNING)
    [claimed] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    jobs.cancel(job)
    states = dict(JobItem.objects.filter(job=job).values_list("id", "state"))
    assert states.pop(claimed.id) == ItemState.CLAIMED
    assert list(states.values()) == [ItemState.CANCELLED]
    # When the runner lets go of it, the item is cancelled, not pending.
    assert items.release_item(item_id=claimed.id, lease_token=claimed.lease_token)
    assert JobItem.objects.get(pk=claimed.id).state == ItemState.CANCELLED


# -- items: claim, lease, finish ---------------------------------------------------------


def test_item_transition_table_matches_the_item_functions():
    # claim: pending -> claimed | failed; cancel: pending -> cancelled; finish_item:
    # claimed -> succeeded | skipped | failed; fail_item: -> failed; retry_later, recover,
    # release_item: -> pending; release_item of a cancelled job: -> cancelled.
    expected = {
        ItemState.PENDING: {ItemState.CLAIMED, ItemState.FAILED, ItemState.CANCELLED},
        ItemState.CLAIMED: {
            ItemState.PENDING,
            ItemState.SUCCEEDED,
            ItemState.SKIPPED,
            ItemState.FAILED,
            ItemState.CANCELLED,
        },
    }
    for state in ItemState.values:
        assert items.ITEM_TRANSITIONS[state] == expected.get(state, set())


def test_claim_sets_a_lease_and_opening_the_image_counts_the_attempt():
    assets = factories.bare_assets(3)
    job = new_job(assets, state=JobState.RUNNING)
    before = timezone.now()
    batch = items.claim(job_id=job.pk, batch_size=2, lease_seconds=90)
    assert len(batch) == 2 and len({c.lease_token for c in batch}) == 2
    for claimed in batch:
        item = JobItem.objects.get(pk=claimed.id)
        assert (item.state, item.attempts, item.lease_token) == (
            ItemState.CLAIMED,
            0,
            claimed.lease_token,
        )
        assert before + timedelta(seconds=89) < item.lease_expires_at
    assert JobItem.objects.filter(job=job, state=ItemState.PENDING).count() == 1
    # Only the item whose image is opened pays an attempt; its batch mate does not.
    opened = items.open_item(item=batch[0], lease_seconds=90)
    assert opened is not None and opened.attempts == 1
    attempts = dict(JobItem.objects.filter(job=job).values_list("pk", "attempts"))
    assert (attempts[batch[0].id], attempts[batch[1].id]) == (1, 0)


def test_claim_skips_items_not_yet_due_and_other_jobs():
    a, b = factories.bare_assets(2)
    job = new_job([a], state=JobState.RUNNING)
    new_job([b], state=JobState.RUNNING)
    set_item(item_of(job), not_before=timezone.now() + timedelta(minutes=1))
    assert items.claim(job_id=job.pk, batch_size=10, lease_seconds=60) == []


def test_the_attempt_is_counted_before_the_image_is_opened(
    fake_openai_settings, sync_mode, quick, monkeypatch, django_capture_on_commit_callbacks
):
    [asset] = make_assets(1)
    job = new_job([asset])
    seen = []

    def exploding_preview(*args, **kwargs):
        item = JobItem.objects.get(job=job)
        seen.append((item.state, item.attempts, item.lease_token is not None))
        raise images.ImageError("the test's preview refuses")

    monkeypatch.setattr(images, "preview", exploding_preview)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.enqueue(job)
    assert seen == [(ItemState.CLAIMED, 1, True)]
    item = item_of(job)
    assert (item.state, item.error) == (ItemState.FAILED, "the test's preview refuses")


def result_for(asset) -> DescribeResult:
    return DescribeResult(
        output={"alt_text": "A fox in snow", "is_decorative": False},
        provider="openai",
        model="gpt-4o-mini",
    )


def finish(claimed, asset, *, token=None):
    from metadata.generation import GenerationOptions

    return items.finish_item(
        item_id=claimed.id,
        lease_token=token or claimed.lease_token,
        result=result_for(asset),
        source="ai",
        options=GenerationOptions(),
    )


def test_finish_under_the_lease_writes_revision_fields_and_state_together():
    [asset] = make_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    [claimed] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    assert finish(claimed, asset)
    item = item_of(job)
    asset.refresh_from_db()
    assert item.state == ItemState.SUCCEEDED and item.lease_token is None
    assert item.revision == asset.current_revision and item.revision.job == job
    assert asset.alt_text == "A fox in snow"


def test_finish_with_a_wrong_token_writes_nothing():
    [asset] = make_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    [claimed] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    assert not finish(claimed, asset, token=uuid.uuid4())
    assert item_of(job).state == ItemState.CLAIMED
    assert not MetadataRevision.objects.filter(job=job).exists()
    asset.refresh_from_db()
    assert asset.alt_text == ""


def test_a_worker_whose_lease_expired_and_was_recovered_writes_nothing():
    [asset] = make_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    [frozen] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    frozen = items.open_item(item=frozen, lease_seconds=60)  # the runner opens it
    recovery.recover(now=timezone.now() + timedelta(seconds=61))
    [second] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    second = items.open_item(item=second, lease_seconds=60)  # the runner opens it
    assert second.attempts == 2
    assert not finish(frozen, asset)
    assert not items.fail_item(item_id=frozen.id, lease_token=frozen.lease_token, error="x")
    assert not items.retry_later(
        item_id=frozen.id, lease_token=frozen.lease_token, not_before=timezone.now(), error="x"
    )
    assert not MetadataRevision.objects.filter(job=job).exists()
    assert finish(second, asset)
    assert MetadataRevision.objects.filter(job=job).count() == 1


@pytest.mark.parametrize(
    "state", [ItemState.PENDING, ItemState.SUCCEEDED, ItemState.FAILED, ItemState.CANCELLED]
)
def test_lease_functions_refuse_items_that_are_not_claimed(state):
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    token = uuid.uuid4()
    item = set_item(item_of(job), state=state, lease_token=token)
    assert not items.fail_item(item_id=item.id, lease_token=token, error="x")
    assert not items.retry_later(
        item_id=item.id, lease_token=token, not_before=timezone.now(), error="x"
    )
    assert not items.release_item(item_id=item.id, lease_token=token)
    assert not items.extend_lease(item_id=item.id, lease_token=token, seconds=60)
    assert item_of(job).state == state


def test_retry_later_puts_the_item_back_with_not_before_and_keeps_the_attempt():
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    [claimed] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    claimed = items.open_item(item=claimed, lease_seconds=60)  # the runner opens it
    due = timezone.now() + timedelta(seconds=30)
    assert items.retry_later(
        item_id=claimed.id, lease_token=claimed.lease_token, not_before=due, error="429"
    )
    item = item_of(job)
    assert (item.state, item.attempts, item.not_before, item.error) == (
        ItemState.PENDING,
        1,
        due,
        "429",
    )
    assert items.claim(job_id=job.pk, batch_size=1, lease_seconds=60) == []


def test_release_gives_the_attempt_back():
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    [claimed] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    assert items.release_item(item_id=claimed.id, lease_token=claimed.lease_token)
    item = item_of(job)
    assert (item.state, item.attempts, item.lease_token) == (ItemState.PENDING, 0, None)


def test_an_item_that_used_up_its_attempts_fails_with_the_reason_instead_of_opening(settings):
    settings.MEDIAOPT_JOB_MAX_ATTEMPTS = 3
    a, b = factories.bare_assets(2)
    job = new_job([a, b], state=JobState.RUNNING)
    poisoned = set_item(JobItem.objects.get(job=job, asset=a), attempts=3)
    [claimed] = items.claim(job_id=job.pk, batch_size=2, lease_seconds=60)
    assert claimed.asset_id == b.pk
    poisoned.refresh_from_db()
    assert poisoned.state == ItemState.FAILED
    assert poisoned.error == (
        "gave up after 3 attempts (the worker died while processing this image)"
    )


# -- the database constraint -------------------------------------------------------------


def test_an_asset_has_at_most_one_active_item_enforced_by_the_database():
    [asset] = factories.bare_assets(1)
    first = new_job([asset])
    second = RegenerationJob.objects.create(kind=JobKind.BULK)
    with pytest.raises(IntegrityError), transaction.atomic():
        JobItem.objects.create(job=second, asset=asset)
    # A finished item no longer holds the asset.
    set_item(item_of(first), state=ItemState.SUCCEEDED)
    JobItem.objects.create(job=second, asset=asset)
    factories.recount_jobs(second)


def test_create_job_skips_busy_assets_and_says_how_many():
    assets = factories.bare_assets(5)
    new_job(assets[:2])
    creation = jobs.create_job(
        kind=JobKind.BULK, asset_ids=[a.pk for a in assets] + [assets[4].pk], options={}
    )
    assert creation.busy_count == 2
    assert set(creation.job.items.values_list("asset_id", flat=True)) == {a.pk for a in assets[2:]}
    assert creation.job.state == JobState.DRAFT


# -- recovery ----------------------------------------------------------------------------


def test_recover_returns_expired_leases_and_sends_a_runner_to_a_job_without_one(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.MEDIAOPT_JOB_RUNNER_STALE_SECONDS = 60
    sent = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: sent.append(a))
    a, b, c = factories.bare_assets(3)
    orphan = new_job([a], state=JobState.RUNNING)
    alive = new_job([b], state=JobState.RUNNING)
    [lost] = items.claim(job_id=orphan.pk, batch_size=1, lease_seconds=60)
    lost = items.open_item(item=lost, lease_seconds=60)  # the runner opens it
    [held] = items.claim(job_id=alive.pk, batch_size=1, lease_seconds=600)
    set_item(item_of(alive), state=ItemState.SUCCEEDED)  # its runner finished, then died
    later = timezone.now() + timedelta(seconds=120)
    RegenerationJob.objects.filter(pk=orphan.pk).update(runner_heartbeat=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        report = recovery.recover(now=later)

    item = item_of(orphan)
    assert (item.state, item.attempts, item.lease_token) == (ItemState.PENDING, 1, None)
    assert report.released == 1
    assert report.requeued == [orphan.pk] and sent == [("metadata.tasks.run_job", orphan.pk)]
    assert report.completed == [alive.pk]
    # A second recovery right after sends no second runner: the heartbeat was touched.
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.recover(now=later).requeued == []
    assert len(sent) == 1
    del lost, held, c


def test_recover_leaves_a_job_with_a_live_runner_alone(settings):
    settings.MEDIAOPT_JOB_RUNNER_STALE_SECONDS = 60
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    RegenerationJob.objects.filter(pk=job.pk).update(runner_heartbeat=timezone.now())
    assert recovery.recover().requeued == []


def test_recover_cancels_an_expired_item_of_a_cancelled_job():
    [asset] = factories.bare_assets(1)
    job = new_job([asset], state=JobState.RUNNING)
    items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    jobs.cancel(job)
    recovery.recover(now=timezone.now() + timedelta(seconds=61))
    assert item_of(job).state == ItemState.CANCELLED


def test_the_recover_schedule_exists_once_after_migrate():
    create_schedules(using="default")
    [schedule] = Schedule.objects.filter(name=RECOVER_SCHEDULE)
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.cluster) == (
        "metadata.tasks.recover",
        Schedule.MINUTES,
        1,
        "bulk",
    )


# -- cluster settings --------------------------------------------------------------------


def test_both_clusters_keep_django_q2_redelivery_harmless(settings):
    base = {k: v for k, v in settings.Q_CLUSTER.items() if k != "ALT_CLUSTERS"}
    interactive = {**base, **settings.Q_CLUSTER["ALT_CLUSTERS"]["interactive"]}
    assert base["cluster_name"] == "bulk"
    for conf in (base, interactive):
        assert conf["retry"] >= 2 * conf["timeout"]
        assert conf["queue_limit"] <= conf["workers"]
        assert conf["ack_failures"] is True and conf["max_attempts"] >= 1
        # A runner hands over after its budget plus at most one item (one provider call).
        assert jobs.run_budget_seconds() + 2 * settings.OPENAI_TIMEOUT < conf["timeout"]
