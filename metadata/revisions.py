"""The only writer of metadata: every change to an asset's fields is a new revision.

Each function writes, in one transaction, a full snapshot (MetadataRevision) and the asset's
fields, sources and current revision, guarded by the revision the change was based on: if
the asset moved on meanwhile, nothing is written and StaleRevision is raised.
Callers may wrap these in a larger transaction (a job item's finish also writes its state
and the credit capture), so none of them is durable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from mediaopt.library.fields import EDITABLE_FIELDS, FIELDS, Source, source_field
from mediaopt.library.models import MediaAsset
from metadata import undo_plan
from metadata.models import (
    MetadataRevision,
    RegenerationJob,
    RevisionKind,
    Settings,
)
from metadata.strategies import FieldChange, Plan

# What a revision records as changed, and what restore and undo can take back.


class StaleRevision(Exception):
    """The asset's metadata changed after the caller read it."""

    def __init__(self, *, asset_id: int, expected: int | None, current: int | None) -> None:
        super().__init__(
            f"Image {asset_id} changed since it was read (revision {current}, not {expected})."
        )
        self.asset_id = asset_id
        self.expected = expected
        self.current = current


def _lock(asset_id: int, *, based_on_revision_id: int | None) -> MediaAsset:
    """The asset, row-locked for this transaction (with its current revision); raises
    StaleRevision if it moved on from ``based_on_revision_id``."""
    # The row lock serialises writers on PostgreSQL; SQLite's IMMEDIATE transactions
    # already do. The conditional UPDATE in _apply is the guard on both.
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
    return asset


@dataclass
class _Pending:
    """A revision built on a locked asset, not yet written (see _apply)."""

    asset: MediaAsset
    revision: MetadataRevision
    values: dict[str, str]
    sources: dict[str, str]
    updated_at: datetime | None = None  # set once written


def _prepare(
    asset: MediaAsset,
    *,
    changes: Mapping[str, FieldChange],
    is_decorative: bool | None,
    kind: str,
    allow_empty: bool = False,
    **revision_fields,
) -> _Pending | None:
    """The revision ``changes`` make on a locked asset; None when they change nothing."""
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
        latest = MetadataRevision.objects.filter(asset_id=asset.pk).aggregate(n=Max("number"))
        number = (latest["n"] or 0) + 1
    revision = MetadataRevision(
        asset_id=asset.pk,
        number=number,
        kind=kind,
        is_decorative=new_decorative,
        changed_fields=[name for name in EDITABLE_FIELDS if name in changed],
        parent_id=asset.current_revision_id,
        **revision_fields,
        **values,
        **{source_field(name): sources[name] for name in FIELDS},
    )
    return _Pending(asset=asset, revision=revision, values=values, sources=sources)


def _language_of(revision: MetadataRevision) -> dict[str, str]:
    """The asset's ``ai_language`` follows the AI revisions only (the library's "AI text in
    another language" filter): other kinds leave it as it was."""
    if revision.kind == RevisionKind.GENERATED and revision.language:
        return {"ai_language": revision.language}
    return {}


def _apply(pending: list[_Pending]) -> None:
    """Write prepared revisions (one INSERT for all) and make each its asset's current one,
    each with a conditional UPDATE on the revision it was based on."""
    if not pending:
        return
    MetadataRevision.objects.bulk_create([p.revision for p in pending])
    now = timezone.now()
    for p in pending:
        revision = p.revision
        updated = MediaAsset.objects.filter(
            pk=p.asset.pk, current_revision_id=revision.parent_id
        ).update(
            current_revision=revision,
            is_decorative=revision.is_decorative,
            revised=revision.number > 1,
            **_language_of(revision),
            updated_at=now,
            **p.values,
            **{source_field(name): p.sources[name] for name in FIELDS},
        )
        if updated != 1:
            raise StaleRevision(asset_id=p.asset.pk, expected=revision.parent_id, current=None)
        p.updated_at = now


def _show_written(pending: _Pending, asset: MediaAsset) -> None:
    """The caller's ``asset`` as just written (what refresh_from_db would read back)."""
    revision = pending.revision
    for name in FIELDS:
        setattr(asset, name, pending.values[name])
        setattr(asset, source_field(name), pending.sources[name])
    for name, value in _language_of(revision).items():
        setattr(asset, name, value)
    asset.current_revision = revision
    asset.is_decorative = revision.is_decorative
    asset.revised = revision.number > 1
    asset.updated_at = pending.updated_at


def _write(
    *,
    asset_id: int,
    based_on_revision_id: int | None,
    changes: Mapping[str, FieldChange],
    is_decorative: bool | None,
    kind: str,
    allow_empty: bool = False,
    shown_on: MediaAsset | None = None,
    **revision_fields,
) -> MetadataRevision | None:
    """Write the revision ``changes`` make (None if nothing changed); ``shown_on``, the
    caller's copy of the asset, then shows what was written."""
    with transaction.atomic():
        asset = _lock(asset_id, based_on_revision_id=based_on_revision_id)
        pending = _prepare(
            asset,
            changes=changes,
            is_decorative=is_decorative,
            kind=kind,
            allow_empty=allow_empty,
            **revision_fields,
        )
        if pending is None:
            return None
        _apply([pending])
    if shown_on is not None:
        _show_written(pending, shown_on)
    return pending.revision


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
        shown_on=asset,
    )
    assert revision is not None
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
    language: str = "",
    findings: Sequence[Mapping] = (),
) -> MetadataRevision | None:
    """Write a generated result that strategies.plan() allowed. None if nothing changed."""
    return _write(
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
        language=language,
        findings=list(findings),
        shown_on=asset,
    )


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
    return _write(
        asset_id=asset.pk,
        based_on_revision_id=based_on_revision_id,
        changes=changes,
        is_decorative=is_decorative if "is_decorative" in changed_fields else None,
        kind=RevisionKind.MANUAL,
        actor=actor,
        shown_on=asset,
    )


# -- restore -----------------------------------------------------------------------------


def restore(
    *,
    revision: MetadataRevision,
    fields: Iterable[str] | None = None,
    actor=None,
    based_on_revision_id: int | None,
) -> MetadataRevision | None:
    """Take back ``revision``'s values (all of them, or only ``fields``) as a new revision.

    Each restored field takes back the source it had then (a restore is a kind of
    revision, never a source). None when the image already has those values.
    """
    chosen = EDITABLE_FIELDS if fields is None else tuple(fields)
    unknown = set(chosen) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not a metadata field: {', '.join(sorted(unknown))}.")
    changes = {
        name: FieldChange(
            value=getattr(revision, name), source=getattr(revision, source_field(name))
        )
        for name in FIELDS
        if name in chosen
    }
    return _write(
        asset_id=revision.asset_id,
        based_on_revision_id=based_on_revision_id,
        changes=changes,
        is_decorative=revision.is_decorative if "is_decorative" in chosen else None,
        kind=RevisionKind.RESTORE,
        actor=actor,
        restored_from=revision,
    )


# -- undo ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UndoOutcome:
    plan: undo_plan.UndoPlan
    revision: MetadataRevision | None


def undo_assets(
    *,
    asset_ids: Sequence[int],
    job: RegenerationJob,
    override: bool,
    actor=None,
    undo_job: RegenerationJob | None = None,
) -> dict[int, UndoOutcome]:
    """Give each image its values from before ``job``: one new revision (kind undo) each.

    Planned under the images' row locks, against what they hold now: a field changed after
    the job is kept (a conflict) unless ``override``. A few queries for the whole batch
    plus one conditional UPDATE per image changed. Never calls a provider, never costs
    credits. Callers may wrap this in a larger transaction (an undo runner's batch).
    """
    with transaction.atomic():
        # In id order, so two lockers of overlapping batches cannot deadlock.
        assets = {
            asset.pk: asset
            for asset in MediaAsset.objects.select_for_update(of=("self",))
            .select_related("current_revision")
            .filter(pk__in=asset_ids)
            .order_by("pk")
        }
        by_asset: dict[int, list[MetadataRevision]] = {}
        for revision in (
            MetadataRevision.objects.filter(job=job, asset_id__in=asset_ids)
            .select_related("parent")
            .order_by("asset_id", "number")
        ):
            by_asset.setdefault(revision.asset_id, []).append(revision)

        outcomes: dict[int, UndoOutcome] = {}
        pending: list[_Pending] = []
        for asset_id in asset_ids:
            asset, job_revisions = assets.get(asset_id), by_asset.get(asset_id)
            if asset is None or not job_revisions:
                plan = undo_plan.UndoPlan(asset_id=asset_id, restore=(), conflicts=())
                outcomes[asset_id] = UndoOutcome(plan=plan, revision=None)
                continue
            plan = undo_plan.plan_for(job_revisions, current=asset, override=override)
            prepared = None
            if plan.restore:
                before, _ = undo_plan.before_and_after(job_revisions)
                assert before is not None
                prepared = _prepare(
                    asset,
                    changes={
                        name: FieldChange(
                            value=getattr(before, name), source=getattr(before, source_field(name))
                        )
                        for name in FIELDS
                        if name in plan.restore
                    },
                    is_decorative=before.is_decorative if "is_decorative" in plan.restore else None,
                    kind=RevisionKind.UNDO,
                    actor=actor,
                    job=undo_job,
                )
            if prepared is not None:
                pending.append(prepared)
            outcomes[asset_id] = UndoOutcome(
                plan=plan, revision=prepared.revision if prepared else None
            )
        _apply(pending)
    return outcomes


def undo_asset(
    *, asset_id: int, job: RegenerationJob, override: bool, actor=None, undo_job=None
) -> UndoOutcome:
    """undo_assets for one image."""
    return undo_assets(
        asset_ids=[asset_id], job=job, override=override, actor=actor, undo_job=undo_job
    )[asset_id]


# -- retention ---------------------------------------------------------------------------


def prunable(*, keep: int, days: int, now: datetime | None = None) -> QuerySet:
    """Revisions retention lets go: beyond an image's latest ``keep`` and older than
    ``days``, never an image's current one, nor any that a job still undoable within
    ``days`` wrote or replaced (its undo needs both)."""
    if keep < 1 or days < 1:
        raise ValueError("Retention keeps at least one revision for at least one day.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    undoable = RegenerationJob.objects.undoable_since(cutoff).values("pk")
    return (
        MetadataRevision.objects.filter(
            created_at__lt=cutoff,
            # The current revision has the asset's highest number (see _commit).
            number__lte=F("asset__current_revision__number") - keep,
        )
        .exclude(pk=F("asset__current_revision_id"))
        .exclude(job__in=undoable)
        .exclude(
            # NOT IN over a NULL would match nothing: only real parents.
            pk__in=MetadataRevision.objects.filter(job__in=undoable, parent__isnull=False).values(
                "parent_id"
            )
        )
    )


def prune(
    *,
    keep: int | None = None,
    days: int | None = None,
    now: datetime | None = None,
    batch: int = 1000,
) -> int:
    """Delete what retention lets go, in batches (short transactions); how many went.

    ``keep`` and ``days`` default to the settings page's values.
    """
    if keep is None or days is None:
        row = Settings.objects.current()
        keep = row.revisions_keep if keep is None else keep
        days = row.revisions_keep_days if days is None else days
    removed = 0
    while True:
        with transaction.atomic():
            ids = list(prunable(keep=keep, days=days, now=now).values_list("pk", flat=True)[:batch])
            if not ids:
                return removed
            removed += (
                MetadataRevision.objects.filter(pk__in=ids)
                .delete()[1]
                .get(MetadataRevision._meta.label, 0)
            )
