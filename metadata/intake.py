"""Files brought into the library, with their first revision, and one job per upload or
import for their metadata.

The files themselves are imported in the request or command (library.ingest, fast); the
provider calls happen in the job, on a cluster or inline, never in a web request.
An uploader who may not start regeneration jobs may not spend on AI either: their files
get the heuristic's metadata at once (no job, no provider, no credits).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from django.db import transaction

from billing import gate
from mediaopt.library import embedded, ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import generation, jobs, revisions, schema
from metadata.models import JobKind, JobQueue, RegenerationJob, Settings


def embedded_values(text: embedded.EmbeddedText) -> dict[str, str]:
    """Embedded text as revision-1 values. The caption is IPTC's "caption/abstract"."""
    return {
        "title": schema.clean_value("title", text.title),
        "caption": schema.clean_value("caption", text.description),
        "description": schema.clean_value("description", text.description),
        "keywords": schema.clean_keywords(list(text.keywords)),
    }


def import_file(
    *, source: bytes | BinaryIO | Path | str, original_name: str, actor=None
) -> ingest.ImportOutcome:
    """Bring one file into the library with its revision 1 (the embedded text), in one
    transaction. Never raises for bad input: a rejection carries its reason."""

    def record_import(asset: MediaAsset, text: embedded.EmbeddedText) -> None:
        revisions.record_import(asset=asset, values=embedded_values(text), actor=actor)

    return ingest.import_file(source=source, original_name=original_name, on_created=record_import)


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


def write_heuristic_metadata(*, asset_ids: list[int], actor=None) -> int | None:
    """Metadata from text embedded in the files and telling file names only, written now.

    Returns how many images got a new revision, or None when the settings turn generation
    on upload off (nothing was to be written). The heuristic reads no network and costs
    nothing, so it runs in the request instead of a job.
    """
    row = Settings.objects.current()
    if not asset_ids or not row.generate_on_upload:
        return None
    options = generation.GenerationOptions.from_settings(row, work=gate.WorkKind.UPLOAD)
    written = 0
    for asset in MediaAsset.objects.filter(pk__in=asset_ids).order_by("pk"):
        result = generation.describe_with_heuristic(asset=asset, row=row, options=options)
        outcome = generation.write_result(
            asset=asset, result=result, source=Source.HEURISTIC, options=options, actor=actor
        )
        written += outcome.revision is not None
    return written
