"""The job row's counts (metadata/counts.py): kept by each writer that moves an item to a
final state (the job invariants check every job test against the real counts), read by
every page at a cost that does not grow with the job; cancel in chunks; item pruning."""

from __future__ import annotations

import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection
from django.db.models.deletion import Collector
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mediaopt.library import deletion
from mediaopt.library.models import MediaAsset
from metadata import counts, items, jobs, notifications, progress, pruning, recovery
from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob
from tests import factories
from tests.metadata.test_jobs import new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

SIZES = [10, 10_000]


def big_job(size: int, *, state: str = JobState.RUNNING, **fields) -> RegenerationJob:
    """A job of ``size`` items made with one bulk_create (not the creation path): a few
    finished, two claimed, the rest pending."""
    start = RegenerationJob.objects.count() * 100_000  # unique files per job
    job = RegenerationJob.objects.create(kind=JobKind.BULK, state=state, **fields)
    assets = factories.bare_assets(size, start=start)
    factories.bulk_items(job, assets)
    ids = list(job.items.order_by("id").values_list("pk", flat=True)[:5])
    JobItem.objects.filter(pk__in=ids[:1]).update(state=ItemState.SUCCEEDED)
    JobItem.objects.filter(pk__in=ids[1:2]).update(state=ItemState.SKIPPED, error="nothing")
    JobItem.objects.filter(pk__in=ids[2:3]).update(state=ItemState.FAILED, error="refused")
    JobItem.objects.filter(pk__in=ids[3:5]).update(
        state=ItemState.CLAIMED, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    factories.recount_jobs(job)
    return job


def all_done(job: RegenerationJob, state: str = ItemState.SUCCEEDED) -> RegenerationJob:
    """Its pending and claimed items put into ``state`` (as a finished job's would be)."""
    JobItem.objects.filter(job=job, state__in=[ItemState.PENDING, ItemState.CLAIMED]).update(
        state=state, lease_expires_at=None
    )
    factories.recount_jobs(job)
    return job


# -- query counts flat from 10 to 10,000 items -------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_progress_reads_the_row_and_the_claimed_items(size, django_assert_max_num_queries):
    job = big_job(size)
    with django_assert_max_num_queries(1):
        counted = progress.progress(job)
    assert (counted.total, counted.succeeded, counted.skipped, counted.failed) == (size, 1, 1, 1)
    assert (counted.claimed, counted.pending) == (2, size - 5)


@pytest.mark.parametrize("size", SIZES)
def test_the_job_page_poll_is_flat(size, admin_client, django_assert_max_num_queries):
    job = big_job(size)
    url = reverse("admin:metadata_regenerationjob_progress", args=[job.pk])
    # Session, user, the job, its counts, recent, ledger, failures (no skip reasons while
    # the job moves: a GROUP BY over its skipped items).
    with django_assert_max_num_queries(7):
        response = admin_client.get(url, {"shown": "running"})
    assert f"3 of {size}</strong> done" in response.content.decode()


@pytest.mark.parametrize("size", SIZES)
def test_the_jobs_list_is_flat(size, admin_client, django_assert_max_num_queries):
    job = big_job(size)
    with django_assert_max_num_queries(8) as captured:
        response = admin_client.get(reverse("admin:metadata_regenerationjob_changelist"))
    assert f"3/{size}" in response.content.decode()
    listed = [q["sql"] for q in captured.captured_queries if "regenerationjob" in q["sql"]]
    assert not any(JobItem._meta.db_table in sql for sql in listed), "a COUNT per job"
    assert job.pk


@pytest.mark.parametrize("size", SIZES)
def test_the_settings_jobs_page_is_flat(size, admin_client, django_assert_max_num_queries):
    big_job(size)
    with django_assert_max_num_queries(8) as captured:
        response = admin_client.get(reverse("admin:metadata_settings_jobs"))
    assert response.status_code == 200
    assert f"3/{size}" in response.content.decode()
    assert not any(JobItem._meta.db_table in q["sql"] for q in captured.captured_queries)


@pytest.mark.parametrize("size", SIZES)
def test_cancel_costs_a_few_queries_and_two_a_chunk(size):
    job = big_job(size)
    chunks = -(-(size - 5) // jobs.cancel_chunk())
    with CaptureQueriesContext(connection) as captured:
        jobs.cancel(job)
    # The job's move (read, update, read back), then each chunk's UPDATE and its count in
    # a transaction of its own (a savepoint inside the test's), and a last UPDATE that
    # finds none: nothing reads every item.
    assert len(captured) == 3 + 4 * chunks + 3
    assert not any("COUNT(" in q["sql"] for q in captured.captured_queries)
    job.refresh_from_db()
    assert (job.state, job.items_cancelled) == (JobState.CANCELLED, size - 5)
    assert progress.progress(job).pending == 0


# -- the writers keep the counts ---------------------------------------------------------


def test_cancel_works_in_chunks_of_short_transactions(settings, django_assert_num_queries):
    settings.MEDIAOPT_JOB_CREATE_CHUNK = 3
    job = big_job(12)  # 7 pending
    assert jobs.cancel_pending(job_id=job.pk, error="cancelled") == 7
    job.refresh_from_db()
    assert job.items_cancelled == 7
    # Chunks of 3, 3, 1 and a last that finds none: each its UPDATE and its count, each in
    # its own transaction (a savepoint here).
    job2 = big_job(12)
    RegenerationJob.objects.filter(pk=job2.pk).update(state=JobState.CANCELLED)
    with django_assert_num_queries(3 * 4 + 3) as captured:
        jobs.cancel_pending(job_id=job2.pk, error="cancelled")
    updates = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 7


def test_a_give_back_under_a_cancelled_job_is_counted_as_cancelled():
    job = new_job(factories.bare_assets(3), state=JobState.RUNNING)
    [held] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    jobs.cancel(job)
    assert items.release_item(item_id=held.id, lease_token=held.lease_token)
    job.refresh_from_db()
    assert job.items_cancelled == 3
    assert JobItem.objects.get(pk=held.id).state == ItemState.CANCELLED


def test_recover_counts_the_expired_leases_it_cancels_and_the_exhausted_claims_fail():
    job = new_job(factories.bare_assets(3), state=JobState.RUNNING)
    first = job.items.order_by("id").first()
    JobItem.objects.filter(pk=first.pk).update(attempts=jobs.max_attempts())  # no count
    held = items.claim(job_id=job.pk, batch_size=3, lease_seconds=60)  # the first fails
    assert len(held) == 2 and JobItem.objects.get(pk=first.pk).state == ItemState.FAILED
    RegenerationJob.objects.filter(pk=job.pk).update(state=JobState.CANCELLED)
    recovery.recover(now=timezone.now() + timedelta(hours=1))
    job.refresh_from_db()
    assert (job.items_failed, job.items_cancelled, job.items_total) == (1, 2, 3)


def test_an_image_deleted_from_the_library_is_no_longer_counted():
    assets = factories.bare_assets(3)
    job = new_job(assets, state=JobState.RUNNING)
    [held] = items.claim(job_id=job.pk, batch_size=1, lease_seconds=60)
    items.fail_item(item_id=held.id, lease_token=held.lease_token, error="refused")
    MediaAsset.objects.filter(pk=JobItem.objects.get(pk=held.id).asset_id).delete()
    MediaAsset.objects.filter(pk=assets[2].pk).delete()
    job.refresh_from_db()
    assert (job.items_total, job.items_failed) == (1, 0)


def two_jobs_over(n: int) -> list[MediaAsset]:
    """``n`` images in a running job (a few finished, two claimed) and a completed one."""
    done = RegenerationJob.objects.create(kind=JobKind.BULK, state=JobState.COMPLETED)
    running = big_job(n)
    assets = list(MediaAsset.objects.filter(job_items__job=running))
    factories.bulk_items(done, assets, state=ItemState.SUCCEEDED)
    return assets


# Django's own batches: the image rows' DELETE takes 100 ids a statement, the admin's log
# of a delete 999 parameters' worth of rows on SQLite. Every other statement is counted.
DJANGO_BATCHES = (f'DELETE FROM "{MediaAsset._meta.db_table}"', 'INSERT INTO "django_admin_log"')


def split(captured: CaptureQueriesContext) -> tuple[int, int]:
    """The statements of Django's own batches, and the others."""
    batches = sum(q["sql"].startswith(DJANGO_BATCHES) for q in captured)
    return batches, len(captured) - batches


def deletion_queries(n: int) -> tuple[int, int]:
    """Statements of one queryset delete of ``n`` of ``2n`` images (split)."""
    assets = two_jobs_over(2 * n)
    with CaptureQueriesContext(connection) as captured:
        MediaAsset.objects.filter(pk__in=[a.pk for a in assets[:n]]).delete()
    return split(captured)


def test_deleting_many_images_costs_the_same_statements_as_a_few():
    # Before: three per image (the items' read, an UPDATE per job): 34 others, then 604.
    few, many = deletion_queries(10), deletion_queries(200)
    assert few == (1, many[1]) and many[0] == 2
    # Each job lost exactly the items of the deleted images (the invariants check it too).
    for job in RegenerationJob.objects.all():
        assert job.items_total == job.items.count()


def test_deleting_images_counts_each_once_whatever_the_path():
    assets = two_jobs_over(6)
    assets[0].delete()  # one image's delete
    MediaAsset.objects.filter(pk__in=[a.pk for a in assets[1:3]]).delete()
    collector = Collector(using="default", origin=None)  # a delete without the queryset's
    collector.collect([assets[3]])
    collector.delete()
    for job in RegenerationJob.objects.all():
        assert job.items_total == 2


def test_an_image_that_matches_while_the_delete_runs_is_counted_too():
    """Between the ids' read and Django's collection another image may match the filter:
    the delete takes it too, and its own pre_delete announces it."""
    assets = two_jobs_over(4)
    job = RegenerationJob.objects.get(state=JobState.COMPLETED)

    announced: list[list[int]] = []

    def meanwhile(*, asset_ids, **kwargs):
        announced.append(asset_ids)
        if len(announced) == 1:  # after the batch's ids were read
            [late] = factories.bare_assets(1, start=999_999)
            JobItem.objects.create(job=job, asset=late, state=ItemState.SUCCEEDED)
            counts.added(job_id=job.pk, n=1)
            counts.moved(job_id=job.pk, state=ItemState.SUCCEEDED)

    deletion.assets_deleting.connect(meanwhile, dispatch_uid="test.meanwhile")
    try:
        _, deleted = MediaAsset.objects.filter(original_name__startswith="photo-").delete()
    finally:
        deletion.assets_deleting.disconnect(dispatch_uid="test.meanwhile")
    assert deleted[MediaAsset._meta.label] == len(assets) + 1
    assert [len(ids) for ids in announced] == [len(assets), 1]
    assert not JobItem.objects.exists()
    assert list(RegenerationJob.objects.values_list("items_total", flat=True)) == [0, 0]


def test_the_admin_deletes_selected_images_in_the_same_statements_at_10_and_200(admin_client):
    url = reverse("admin:mediaopt_mediaasset_changelist")

    def deleting(n: int) -> tuple[int, int]:
        chosen = [a.pk for a in two_jobs_over(2 * n)[:n]]
        form = {"action": "delete_selected", "_selected_action": chosen, "post": "yes"}
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.post(url, form).status_code == 302
        assert not MediaAsset.objects.filter(pk__in=chosen).exists()
        return split(captured)

    deleting(1)  # the session, the settings row and the content type, once
    few, many = deleting(10), deleting(200)
    assert few[1] == many[1], (few, many)
    for job in RegenerationJob.objects.all():
        assert job.items_total == job.items.count()


def test_the_summary_line_reads_the_row():
    job = all_done(big_job(10, state=JobState.COMPLETED))
    assert notifications.summary_line(job=job) == (
        f"Job #{job.pk} completed: 8 succeeded, 1 failed, 1 skipped"
    )


def test_the_migration_fills_the_counts_of_existing_jobs():
    job = big_job(20)
    RegenerationJob.objects.filter(pk=job.pk).update(
        items_total=0, items_succeeded=0, items_skipped=0, items_failed=0, items_cancelled=0
    )
    migration = importlib.import_module("metadata.migrations.0017_job_counts")
    migration.fill_counts(apps, SimpleNamespace(connection=connection))
    job.refresh_from_db()
    assert (job.items_total, job.items_succeeded, job.items_skipped, job.items_failed) == (
        20,
        1,
        1,
        1,
    )


def test_update_returning_says_what_each_row_became():
    job = big_job(10)
    rows = counts.update_returning(
        JobItem.objects.filter(job=job, state=ItemState.CLAIMED),
        state=items.pending_unless_finished(),
    )
    assert sorted(rows) == [(job.pk, ItemState.PENDING.value)] * 2


# -- pruning -----------------------------------------------------------------------------


def test_pruning_deletes_old_finished_items_in_batches_and_keeps_the_counts(admin_client):
    long_ago = timezone.now() - timedelta(days=40)
    old = all_done(big_job(12, state=JobState.COMPLETED, finished_at=long_ago))
    recent = all_done(big_job(3, state=JobState.COMPLETED, finished_at=timezone.now()))
    running = big_job(4, finished_at=timezone.now() - timedelta(days=40))

    assert pruning.prune_items(days=30, batch=5) == 12
    old.refresh_from_db()
    assert old.items_pruned_at is not None and not old.items.exists()
    assert (old.items_total, old.items_succeeded, old.items_failed) == (12, 10, 1)
    assert recent.items.count() == 3 and running.items.count() == 4
    assert pruning.prune_items(days=30) == 0  # nothing left

    page = admin_client.get(reverse("admin:metadata_regenerationjob_change", args=[old.pk]))
    html = page.content.decode()
    assert "The list of this job's images was pruned" in html and "12 of 12" in html
    failures = admin_client.get(
        reverse("admin:metadata_regenerationjob_failures", args=[old.pk])
    ).content.decode()
    assert "1 failed image." in failures and "was pruned" in failures


def test_the_nightly_task_prunes_items_with_the_revisions_retention():
    from metadata import tasks
    from metadata.models import Settings

    days = Settings.objects.current().revisions_keep_days
    job = big_job(
        3, state=JobState.CANCELLED, finished_at=timezone.now() - timedelta(days=days + 1)
    )
    JobItem.objects.filter(job=job).exclude(
        state__in=[ItemState.SUCCEEDED, ItemState.SKIPPED, ItemState.FAILED]
    ).update(state=ItemState.CANCELLED)
    factories.recount_jobs(job)
    tasks.prune_revisions()
    job.refresh_from_db()
    assert job.items_pruned_at is not None and not job.items.exists()


@pytest.mark.parametrize("state", ["succeeded", "skipped", "failed"])
def test_the_rate_reads_only_the_recent_items_of_one_state(state):
    """Each worked state's count is a range on its own partial index: the pending items a
    job is made with enter none of them, and the rate reads none of them."""
    since = timezone.now() - timedelta(minutes=2)
    query = JobItem.objects.filter(job_id=1, state=state, updated_at__gte=since)
    assert f"jobitem_recent_{state}" in query.explain()
