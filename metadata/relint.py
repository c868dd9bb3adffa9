"""The whole library re-checked: every image's current values through today's lint.

Rules added later reach old values this way. Streamed by key in batches (constant memory,
a fixed number of queries per batch); each image is checked in the language its values
were asked in (the current revision's), else the settings' language. The counts per rule
are kept as a LintRun for the settings page; ``fix_openers`` also takes "Image of ..."
openers off alt texts, as a revision through revisions.py that keeps each value's source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db.models import F
from django.utils import timezone

from mediaopt.library.fields import FIELDS, source_field
from mediaopt.library.models import MediaAsset
from metadata import quality, revisions
from metadata.models import LintRun, Settings
from metadata.strategies import FieldChange, Plan

BATCH = 1000
OPENER = "alt.opener"


@dataclass(frozen=True)
class AssetFindings:
    asset_id: int
    name: str
    findings: quality.Findings
    fixed: bool = False


def _batches(batch: int) -> Iterator[list[dict]]:
    after = 0
    columns = (
        "pk",
        "original_name",
        "is_decorative",
        "current_revision_id",
        *FIELDS,
        *(source_field(name) for name in FIELDS),
    )
    while True:
        rows = list(
            MediaAsset.objects.filter(pk__gt=after)
            .order_by("pk")
            .annotate(asked_in=F("current_revision__language"))
            .values(*columns, "asked_in")[:batch]
        )
        if not rows:
            return
        yield rows
        after = rows[-1]["pk"]


def _fix_opener(row: dict, findings: quality.Findings, *, actor) -> bool:
    fix = next((f.fix for f in findings.for_field("alt_text") if f.code == OPENER and f.fix), "")
    if not fix or fix == row["alt_text"]:
        return False
    asset = MediaAsset.objects.get(pk=row["pk"])
    change = FieldChange(value=fix, source=row[source_field("alt_text")])
    try:
        revision = revisions.apply_plan(
            asset=asset,
            plan=Plan(changes={"alt_text": change}),
            based_on_revision_id=row["current_revision_id"],
            actor=actor,
            provider="lint",
            findings=[f for f in findings.as_json() if f.get("code") != OPENER],
        )
    except revisions.StaleRevision:
        return False  # changed since it was read: the next run sees the new value
    return revision is not None


def relint_library(
    *,
    fix_openers: bool = False,
    actor=None,
    batch: int = BATCH,
    on_asset: Callable[[AssetFindings], None] | None = None,
) -> LintRun:
    """Check every image; returns the run with its counts (and stores it)."""
    language = Settings.objects.current().language
    run = LintRun.objects.create()
    counts: Counter[str] = Counter()
    images = errors = warnings = fixed = 0
    for rows in _batches(batch):
        for row in rows:
            # The alt text always: an empty one on an image that is not decorative is a
            # finding of its own.
            values = {name: row[name] for name in FIELDS if row[name] or name == "alt_text"}
            findings = quality.lint(
                values,
                language=row["asked_in"] or language,
                is_decorative=row["is_decorative"],
            )
            images += 1
            counts.update(set(findings.codes))
            errors += bool(findings.errors)
            warnings += bool(findings.warnings)
            was_fixed = fix_openers and _fix_opener(row, findings, actor=actor)
            fixed += was_fixed
            if on_asset is not None:
                on_asset(AssetFindings(row["pk"], row["original_name"], findings, was_fixed))
    LintRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(),
        images=images,
        with_errors=errors,
        with_warnings=warnings,
        fixed=fixed,
        counts=dict(counts.most_common()),
    )
    run.refresh_from_db()
    return run


def latest_run() -> LintRun | None:
    return LintRun.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
