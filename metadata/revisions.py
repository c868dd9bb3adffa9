"""The only writer of metadata: every change to an asset's fields is a new revision.

Each function writes, in one transaction, a full snapshot (MetadataRevision) and the asset's
fields, sources and current revision, guarded by the revision the change was based on: if
the asset moved on meanwhile, nothing is written and StaleRevision is raised.
Callers may wrap these in a larger transaction (a job item's finish also writes its state
and the credit capture), so none of them is durable.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from mediaopt.models import MediaAsset
from metadata.models import MetadataRevision, RegenerationJob, RevisionKind
from metadata.schema import FIELDS, Source, source_field
from metadata.strategies import FieldChange, Plan


class StaleRevision(Exception):
    """The asset's metadata changed after the caller read it."""

    def __init__(self, *, asset_id: int, expected: int | None, current: int | None) -> None:
        super().__init__(
            f"Image {asset_id} changed since it was read (revision {current}, not {expected})."
        )
        self.asset_id = asset_id
        self.expected = expected
        self.current = current


def _write(
    *,
    asset_id: int,
    based_on_revision_id: int | None,
    changes: Mapping[str, FieldChange],
    is_decorative: bool | None,
    kind: str,
    actor=None,
    job: RegenerationJob | None = None,
    provider: str = "",
    model: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    allow_empty: bool = False,
) -> MetadataRevision | None:
    with transaction.atomic():
        # The row lock serialises writers on PostgreSQL; SQLite's IMMEDIATE transactions
        # already do. The conditional UPDATE below is the guard on both.
        asset = (
            MediaAsset.objects.select_for_update(of=("self",))
            .select_related("current_revision")
            .get(pk=asset_id)
        )
        if asset.current_revision_id != based_on_revision_id:
            raise StaleRevision(
                asset_id=asset_id,
                expected=based_on_revision_id,
                current=asset.current_revision_id,
            )
        values = asset.values()
        sources = asset.sources()
        changed: list[str] = []
        for name, change in changes.items():
            if values[name] != change.value or sources[name] != change.source:
                values[name] = change.value
                sources[name] = change.source
                changed.append(name)
        new_decorative = asset.is_decorative if is_decorative is None else is_decorative
        if new_decorative != asset.is_decorative:
            changed.append("is_decorative")
        if not changed and not allow_empty:
            return None

        # Revisions are append-only and each write makes the new one current, so the
        # current revision has the highest number (under the lock, no one adds another).
        if asset.current_revision is not None:
            number = asset.current_revision.number + 1
        else:
            latest = MetadataRevision.objects.filter(asset_id=asset_id).aggregate(n=Max("number"))
            number = (latest["n"] or 0) + 1
        revision = MetadataRevision.objects.create(
            asset_id=asset_id,
            number=number,
            kind=kind,
            is_decorative=new_decorative,
            changed_fields=[name for name in (*FIELDS, "is_decorative") if name in changed],
            parent_id=based_on_revision_id,
            job=job,
            actor=actor,
            provider=provider,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            **values,
            **{source_field(name): sources[name] for name in FIELDS},
        )
        updated = MediaAsset.objects.filter(
            pk=asset_id, current_revision_id=based_on_revision_id
        ).update(
            current_revision=revision,
            is_decorative=new_decorative,
            updated_at=timezone.now(),
            **values,
            **{source_field(name): sources[name] for name in FIELDS},
        )
        if updated != 1:
            raise StaleRevision(asset_id=asset_id, expected=based_on_revision_id, current=None)
        return revision


def record_import(
    *, asset: MediaAsset, values: Mapping[str, str], actor=None, job=None
) -> MetadataRevision:
    """Revision 1 of a new asset: embedded text found in the file, or nothing."""
    changes = {
        name: FieldChange(value=value, source=Source.EMBEDDED if value else Source.NONE)
        for name, value in values.items()
        if value
    }
    revision = _write(
        asset_id=asset.pk,
        based_on_revision_id=None,
        changes=changes,
        is_decorative=None,
        kind=RevisionKind.IMPORT,
        actor=actor,
        job=job,
        allow_empty=True,
    )
    assert revision is not None
    asset.refresh_from_db()
    return revision


def apply_plan(
    *,
    asset: MediaAsset,
    plan: Plan,
    based_on_revision_id: int | None,
    actor=None,
    job: RegenerationJob | None = None,
    provider: str = "",
    model: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> MetadataRevision | None:
    """Write a generated result that strategies.plan() allowed. None if nothing changed."""
    revision = _write(
        asset_id=asset.pk,
        based_on_revision_id=based_on_revision_id,
        changes=plan.changes,
        is_decorative=plan.is_decorative,
        kind=RevisionKind.GENERATED,
        actor=actor,
        job=job,
        provider=provider,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    if revision is not None:
        asset.refresh_from_db()
    return revision


def apply_manual(
    *,
    asset: MediaAsset,
    values: Mapping[str, str],
    is_decorative: bool,
    changed_fields: list[str],
    actor,
    based_on_revision_id: int | None,
) -> MetadataRevision | None:
    """A person's edit: only the fields they changed become manual (form.changed_data)."""
    changes = {
        name: FieldChange(value=values[name], source=Source.MANUAL if values[name] else Source.NONE)
        for name in FIELDS
        if name in changed_fields
    }
    revision = _write(
        asset_id=asset.pk,
        based_on_revision_id=based_on_revision_id,
        changes=changes,
        is_decorative=is_decorative if "is_decorative" in changed_fields else None,
        kind=RevisionKind.MANUAL,
        actor=actor,
    )
    if revision is not None:
        asset.refresh_from_db()
    return revision
