"""An undo job worked by a real qcluster on PostgreSQL while people keep editing."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from mediaopt.library.fields import Source
from metadata import progress, revisions, undo
from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob, RevisionKind
from metadata.strategies import FieldChange, Plan
from tests.factories import bare_assets
from tests.services.test_job_clusters import wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.mark.timeout(120)
def test_an_undo_racing_hand_edits_never_loses_an_edit(start_cluster):
    assets = bare_assets(300)
    for asset in assets:
        revisions.record_import(asset=asset, values={"title": f"Embedded {asset.pk}"})
    job = RegenerationJob.objects.create(
        kind=JobKind.BULK, state=JobState.COMPLETED, finished_at=timezone.now()
    )
    for asset in assets:
        revisions.apply_plan(
            asset=asset,
            plan=Plan(changes={"alt_text": FieldChange(f"AI {asset.pk}", Source.AI)}),
            based_on_revision_id=asset.current_revision_id,
            job=job,
        )
    cluster = start_cluster(LOG_LEVEL="INFO")
    started = undo.start(job=job)
    assert started.job.queue == "bulk" and started.busy_count == 0

    # People edit every third image while the cluster undoes: each edit is based on what
    # they read, so it either lands before the undo reaches the image (then the undo keeps
    # it) or is refused as stale after it (then they are told; nothing is overwritten).
    # They start once the cluster has begun, from the last image (the undo goes by id), so
    # the two meet somewhere in the middle.
    try:
        wait_for(started.job, seconds=60, until=lambda j: progress.progress(j).done > 0)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{cluster.output()}") from None
    landed, refused = set(), set()
    for asset in reversed(assets[::3]):
        asset.refresh_from_db()
        try:
            revisions.apply_manual(
                asset=asset,
                values={**asset.values(), "alt_text": f"typed {asset.pk}"},
                is_decorative=False,
                changed_fields=["alt_text"],
                actor=None,
                based_on_revision_id=asset.current_revision_id,
            )
            landed.add(asset.pk)
        except revisions.StaleRevision:
            refused.add(asset.pk)

    undo_job = wait_for(started.job, seconds=90)
    assert undo_job.state == JobState.COMPLETED
    worked = re.findall(rf"undo job {undo_job.pk}: this runner worked (\d+) item", cluster.output())
    assert sum(map(int, worked)) == 300, cluster.output()

    items = {item.asset_id: item for item in JobItem.objects.filter(job=undo_job)}
    for asset in assets:
        asset.refresh_from_db()
        item = items[asset.pk]
        assert asset.title == f"Embedded {asset.pk}"
        if asset.pk in landed and item.conflicts == ["alt_text"]:
            # Edited before the undo reached it: the edit stays, listed as a conflict.
            assert asset.alt_text == f"typed {asset.pk}"
            assert asset.alt_text_source == Source.MANUAL
            assert item.state == ItemState.SKIPPED
        else:
            # Undone first (an edit after that was based on the undo's revision, or was
            # refused as stale): the value from before the job, unless edited after it.
            assert item.state == ItemState.SUCCEEDED and item.conflicts == []
            assert item.revision.kind == RevisionKind.UNDO
            expected = f"typed {asset.pk}" if asset.pk in landed else ""
            assert asset.alt_text == expected
    assert len(landed) + len(refused) == 100
