"""Histories built through revisions.py, for tests of restore, undo and the pages on them.

Plain functions over the database (like factories.bare_assets): images without files, a
finished job, a generated write, a hand edit.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import revisions
from metadata.models import JobKind, JobState, MetadataRevision, RegenerationJob
from metadata.strategies import FieldChange, Plan
from tests.factories import bare_assets


def imported(n: int = 1, *, start: int = 0, **embedded: str) -> list[MediaAsset]:
    """``n`` images with revision 1 written as an import of ``embedded`` values."""
    assets = bare_assets(n, start=start)
    for asset in assets:
        revisions.record_import(asset=asset, values=embedded)
    return assets


def finished_job(kind: str = JobKind.BULK, *, days_ago: float = 0, **fields) -> RegenerationJob:
    """A completed job (that wrote nothing yet: see generated)."""
    return RegenerationJob.objects.create(
        kind=kind,
        state=JobState.COMPLETED,
        finished_at=timezone.now() - timedelta(days=days_ago),
        **fields,
    )


def generated(
    asset: MediaAsset,
    job: RegenerationJob | None = None,
    *,
    source: str = Source.AI,
    provider: str = "openai",
    model: str = "gpt-4o-mini",
    decorative: bool | None = None,
    language: str = "",
    **values: str,
) -> MetadataRevision:
    """A generated result written as a job would (strategies already applied)."""
    asset.refresh_from_db()
    revision = revisions.apply_plan(
        asset=asset,
        plan=Plan(
            changes={name: FieldChange(value, source) for name, value in values.items()},
            is_decorative=decorative,
        ),
        based_on_revision_id=asset.current_revision_id,
        job=job,
        provider=provider,
        model=model,
        language=language,
    )
    assert revision is not None
    return revision


def hand_edit(asset: MediaAsset, *, actor=None, **values) -> MetadataRevision:
    """A person's edit of some fields (and ``is_decorative``), based on what they read."""
    asset.refresh_from_db()
    decorative = values.pop("is_decorative", asset.is_decorative)
    changed = list(values) + (["is_decorative"] if decorative != asset.is_decorative else [])
    revision = revisions.apply_manual(
        asset=asset,
        values={**asset.values(), **values},
        is_decorative=decorative,
        changed_fields=changed,
        actor=actor,
        based_on_revision_id=asset.current_revision_id,
    )
    assert revision is not None
    return revision
