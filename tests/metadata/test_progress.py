"""progress.py: the counts a job page polls cost one query whatever the job's size."""

from __future__ import annotations

import pytest

from metadata import items, progress
from metadata.models import ItemState, JobItem, JobState
from tests import factories
from tests.metadata.test_jobs import new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.mark.parametrize("size", [10, 1000])
def test_progress_takes_one_query_whatever_the_size(size, django_assert_num_queries):
    assets = factories.bare_assets(size)
    job = new_job(assets, state=JobState.RUNNING)
    items.claim(job_id=job.pk, batch_size=3, lease_seconds=60)
    JobItem.objects.filter(job=job, state=ItemState.PENDING).filter(
        pk__in=JobItem.objects.filter(job=job, state=ItemState.PENDING).values("pk")[:2]
    ).update(state=ItemState.FAILED)
    with django_assert_num_queries(1):
        counts = progress.progress(job)
    assert (counts.total, counts.claimed, counts.failed) == (size, 3, 2)
    assert counts.pending == size - 5 and counts.done == 2
