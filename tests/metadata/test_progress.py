"""progress.py: the counts a job page polls cost one small query whatever the job's size
(its row's counts and its claimed items), and they are the counts of its items."""

from __future__ import annotations

import pytest

from metadata import items, progress
from metadata.models import JobState
from tests import factories
from tests.metadata.test_jobs import new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.mark.parametrize("size", [10, 1000])
def test_progress_takes_one_query_whatever_the_size(size, django_assert_num_queries):
    assets = factories.bare_assets(size)
    job = new_job(assets, state=JobState.RUNNING)
    for claimed in items.claim(job_id=job.pk, batch_size=2, lease_seconds=60):
        items.fail_item(item_id=claimed.id, lease_token=claimed.lease_token, error="refused")
    items.claim(job_id=job.pk, batch_size=3, lease_seconds=60)
    with django_assert_num_queries(1):
        counts = progress.progress(job)
    assert (counts.total, counts.claimed, counts.failed) == (size, 3, 2)
    assert counts.pending == size - 5 and counts.done == 2
