"""Metadata for files just brought into the library: one job per upload or import.

The files themselves are imported in the request or command (ingest.py, fast); the
provider calls happen in the job, on a cluster or inline, never in a web request.
"""

from __future__ import annotations

from django.db import transaction

from metadata import jobs
from metadata.models import JobKind, JobQueue, RegenerationJob, Settings


def draft_for_new_assets(
    *, kind: str, asset_ids: list[int], created_by=None, queue: str = JobQueue.BULK
) -> RegenerationJob | None:
    """A draft job writing metadata for ``asset_ids``, or None when there is nothing to do:
    no new assets, or the settings turn generation on upload off.

    Its options are left empty, so the runner applies the settings' fields and strategy
    as they are when it runs.
    """
    if not asset_ids or not Settings.objects.current().generate_on_upload:
        return None
    return jobs.create_job(kind=kind, asset_ids=asset_ids, created_by=created_by, queue=queue).job


def start_upload_job(*, asset_ids: list[int], created_by=None) -> RegenerationJob | None:
    """An ``upload`` job on the interactive queue, handed to its cluster on commit.

    One transaction: the runner is sent only once the job and its items are visible to it.
    """
    with transaction.atomic():
        job = draft_for_new_assets(
            kind=JobKind.UPLOAD,
            asset_ids=asset_ids,
            created_by=created_by,
            queue=JobQueue.INTERACTIVE,
        )
        if job is not None:
            jobs.enqueue(job)
    return job
