"""creation.py: a job's items in chunks of short transactions, the preparing state, the
task's path for large jobs, and recover() failing a preparation that died."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from metadata import bulk, creation, jobs
from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob, Strategy
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

ALT_ONLY = bulk.BulkOptions(fields=("alt_text",), strategy=Strategy.FILL_EMPTY)


def test_items_come_in_chunks_newest_first_and_all_of_them(settings):
    settings.MEDIAOPT_JOB_CREATE_CHUNK = 7
    assets = factories.bare_assets(30)
    job = bulk.draft_bulk(actor=None)
    chunks: list[int] = []
    real = creation._insert_items

    def counted(**kwargs):
        n = real(**kwargs)
        chunks.append(n)
        return n

    creation._insert_items = counted
    try:
        result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    finally:
        creation._insert_items = real
    job.refresh_from_db()
    assert result.started and result.items == 30 and job.state == JobState.QUEUED
    assert chunks == [7, 7, 7, 7, 2]
    items = list(JobItem.objects.filter(job=job).order_by("id").values_list("asset_id", flat=True))
    assert items == sorted((a.pk for a in assets), reverse=True)


def test_a_cancel_during_preparation_stops_the_chunks(settings):
    settings.MEDIAOPT_JOB_CREATE_CHUNK = 5
    factories.bare_assets(20)
    job = bulk.draft_bulk(actor=None)
    jobs.begin_preparing(job)

    def cancel_after_first(added: int) -> None:
        jobs.cancel(RegenerationJob.objects.get(pk=job.pk))

    added = jobs.add_items(job=job, assets=bulk._wanted(job, ALT_ONLY), on_chunk=cancel_after_first)
    assert added == 5
    assert not JobItem.objects.filter(job=job, state=ItemState.PENDING).exists()


def test_a_large_job_is_prepared_by_a_task_once(settings):
    settings.MEDIAOPT_JOB_PREPARE_IN_TASK_ABOVE = 5
    factories.bare_assets(12)
    job = bulk.draft_bulk(actor=None)
    result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    job.refresh_from_db()
    assert result.started and result.preparing and job.state == JobState.PREPARING
    assert job.options["expected_items"] == 12 and not JobItem.objects.filter(job=job).exists()
    assert bulk.confirm(job=job, options=ALT_ONLY, actor=None).already_confirmed
    bulk.prepare(job_id=job.pk)
    bulk.prepare(job_id=job.pk)  # a second delivery changes nothing
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and JobItem.objects.filter(job=job).count() == 12


def test_recover_fails_a_preparation_whose_process_died():
    factories.bare_assets(3)
    job = bulk.draft_bulk(actor=None)
    jobs.begin_preparing(job)
    jobs.add_items(job=job, assets=bulk._wanted(job, ALT_ONLY))
    assert jobs.fail_stale_preparing(older_than=timezone.now() - timedelta(minutes=10)) == 0
    assert jobs.fail_stale_preparing(older_than=timezone.now() + timedelta(seconds=1)) == 1
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert not JobItem.objects.filter(job=job, state=ItemState.PENDING).exists()


def test_a_large_import_stores_a_range_and_a_retry_a_filter():
    assets = factories.bare_assets(jobs.MAX_LISTED_IDS + 1)
    ids = [a.pk for a in assets]
    job = jobs.create_job(kind=JobKind.IMPORT, asset_ids=ids).job
    assert job.scope == {"id_range": [min(ids), max(ids)], "images": len(ids)}
    assert "1,001 new images" in bulk.describe_scope(job)
    JobItem.objects.filter(job=job, asset_id__in=ids[:3]).update(state=ItemState.FAILED)
    factories.recount_jobs(job)
    jobs.cancel(job)
    retry = jobs.retry_failed(job=job, actor=None)
    assert retry.job.scope == {"retry_of": job.pk, "state": "failed"}
    assert JobItem.objects.filter(job=retry.job).count() == 3
    assert bulk.describe_scope(retry.job) == f"the images that failed in job #{job.pk}"
    with pytest.raises(bulk.ScopeError):
        bulk.draft_bulk(actor=None, asset_ids=ids)
