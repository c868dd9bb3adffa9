"""What undoing a job would do, image by image: pure reads and plans, no writes.

revisions.py writes an undo under the images' row locks with these plans, made again
against what the images hold at that moment; undo.py previews them and the undo_job
command's dry run lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mediaopt.library.fields import EDITABLE_FIELDS, source_field
from mediaopt.library.models import MetadataFields
from metadata.models import MetadataRevision

# -- undo --------------------------------------------------------------------------------


def field_state(snapshot: MetadataFields, name: str) -> tuple:
    """What "the same" means for one field: its value and its source."""
    if name == "is_decorative":
        return (snapshot.is_decorative,)
    return (getattr(snapshot, name), getattr(snapshot, source_field(name)))


def empty_snapshot() -> MetadataFields:
    """The metadata of an image before its first revision: nothing."""
    return MetadataRevision()


@dataclass(frozen=True)
class UndoPlan:
    """What undoing one job means for one image.

    ``restore``: fields set back to their values from before the job. ``conflicts``:
    fields changed again after the job; kept, unless the undo overrides them (then they
    are in ``restore`` too).
    """

    asset_id: int
    restore: tuple[str, ...]
    conflicts: tuple[str, ...]
    overridden: bool = False
    # Set when the values from before the job are gone (pruned): nothing is restored.
    unavailable: str = ""

    @property
    def kept(self) -> tuple[str, ...]:
        return () if self.overridden else self.conflicts


def plan_undo(
    *,
    asset_id: int,
    before: MetadataFields,
    after: MetadataFields,
    current: MetadataFields,
    override: bool = False,
) -> UndoPlan:
    """Per field: the job changed it (``before`` != ``after``); if the image still has the
    job's value it goes back; if it has since changed it is a conflict; if it is already
    back to ``before``, there is nothing to do."""
    restore: list[str] = []
    conflicts: list[str] = []
    for name in EDITABLE_FIELDS:
        was, made, now = (field_state(s, name) for s in (before, after, current))
        if was == made or now == was:
            continue
        if now != made:
            conflicts.append(name)
            if not override:
                continue
        restore.append(name)
    return UndoPlan(
        asset_id=asset_id,
        restore=tuple(restore),
        conflicts=tuple(conflicts),
        overridden=override and bool(conflicts),
    )


def before_and_after(
    job_revisions: list[MetadataRevision],
) -> tuple[MetadataFields | None, MetadataFields]:
    """The values an image had before a job, and after it: the parent of the job's first
    revision on the image (nothing before an import) and its last. None for "before" when
    that parent was pruned."""
    first, last = job_revisions[0], job_revisions[-1]
    if first.parent_id is not None:
        return first.parent, last
    if first.number == 1:
        return empty_snapshot(), last
    return None, last


PRUNED = "the values from before the job were pruned (older than the retention settings)"


def undo_plans(
    *,
    job_id: int,
    override: bool = False,
    asset_ids: Iterable[int] | None = None,
    chunk_size: int = 2000,
) -> Iterator[UndoPlan]:
    """What undoing job ``job_id`` would do, image by image, in asset order, without
    writing: one streamed query (a dry run or a preview costs the same at 10 or 100,000
    images). The image's current values are read with it, so a write must plan again
    under the row locks (undo_assets does)."""
    rows = (
        MetadataRevision.objects.filter(job_id=job_id)
        .select_related("parent", "asset")
        .order_by("asset_id", "number")
    )
    if asset_ids is not None:
        rows = rows.filter(asset_id__in=list(asset_ids))
    group: list[MetadataRevision] = []
    for revision in rows.iterator(chunk_size=chunk_size):
        if group and group[0].asset_id != revision.asset_id:
            yield plan_for(group, current=group[-1].asset, override=override)
            group = []
        group.append(revision)
    if group:
        yield plan_for(group, current=group[-1].asset, override=override)


def plan_for(
    job_revisions: list[MetadataRevision], *, current: MetadataFields, override: bool
) -> UndoPlan:
    asset_id = job_revisions[0].asset_id
    before, after = before_and_after(job_revisions)
    if before is None:
        return UndoPlan(asset_id=asset_id, restore=(), conflicts=(), unavailable=PRUNED)
    return plan_undo(
        asset_id=asset_id, before=before, after=after, current=current, override=override
    )
