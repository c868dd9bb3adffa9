"""Metadata for one asset: preview -> gate -> provider -> clean -> strategy -> revision.

Credits (hold before a paid call, capture on success) arrive with the credits issue; the
gate already decides between AI and the heuristic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from billing import gate
from mediaopt import images
from mediaopt.models import MediaAsset
from metadata import revisions, schema, strategies
from metadata.models import MetadataRevision, RegenerationJob, Settings, Strategy
from metadata.providers.base import DescribeRequest, DescribeResult
from metadata.providers.heuristic import HeuristicProvider

logger = logging.getLogger(__name__)

# A concurrent edit between reading the asset and writing the result: re-plan on fresh
# values (no new provider call) this many times before giving up.
STALE_REPLANS = 3


@dataclass(frozen=True)
class GenerationOptions:
    fields: tuple[str, ...] = schema.FIELDS
    strategy: str = Strategy.FILL_EMPTY
    per_field: dict[str, str] = field(default_factory=dict)
    force: bool = False  # also replace fields edited by hand
    work: gate.WorkKind = gate.WorkKind.SINGLE

    @classmethod
    def from_settings(
        cls, row: Settings, *, work: gate.WorkKind = gate.WorkKind.SINGLE, **overrides
    ) -> GenerationOptions:
        values = {
            "fields": tuple(name for name in schema.FIELDS if name in row.default_fields),
            "strategy": row.default_strategy,
            "work": work,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True)
class GenerationOutcome:
    ok: bool
    reason: str = ""
    revision: MetadataRevision | None = None
    provider: str = ""
    model: str = ""


def _request(asset: MediaAsset, row: Settings, options: GenerationOptions, preview: bytes | None):
    with asset.file.open("rb") as handle:
        embedded = images.embedded_text(handle)
    return DescribeRequest(
        preview_jpeg=preview,
        original_name=asset.original_name,
        fields=options.fields,
        language=row.language,
        site_context=row.site_context,
        embedded={
            "title": embedded.title,
            "description": embedded.description,
            "keywords": ", ".join(embedded.keywords),
            # Only so the heuristic can refuse text that merely names the camera.
            "camera": embedded.camera,
        },
    )


def ai_request(*, asset: MediaAsset, row: Settings, options: GenerationOptions) -> DescribeRequest:
    """Open the image and build what the model sees. Raises ImageError.

    Separate from the call so a job runner opens images (CPU, database) in its own
    thread and hands threads only the HTTP call.
    """
    with asset.file.open("rb") as handle:
        preview = images.preview(handle)
    return _request(asset, row, options, preview)


def call_ai_once(
    *, request: DescribeRequest, row: Settings, decision: gate.Decision
) -> DescribeResult:
    """One provider call, no retries and no database access. Raises ProviderError.

    Job runners own their retry policy (an item's not_before), so they call this.
    """
    from metadata.providers.openai import OpenAIConfig, OpenAIProvider

    provider = OpenAIProvider(OpenAIConfig.from_settings(row, api_key=decision.api_key))
    return provider.describe(request)


def describe_with_heuristic(
    *, asset: MediaAsset, row: Settings, options: GenerationOptions
) -> DescribeResult:
    return HeuristicProvider().describe(_request(asset, row, options, None))


def write_result(
    *,
    asset: MediaAsset,
    result: DescribeResult,
    source: str,
    options: GenerationOptions,
    actor=None,
    job: RegenerationJob | None = None,
) -> GenerationOutcome:
    cleaned = schema.clean(result.output)
    for _ in range(STALE_REPLANS):
        asset.refresh_from_db()
        plan = strategies.plan(
            current_values=asset.values(),
            current_sources=asset.sources(),
            current_is_decorative=asset.is_decorative,
            result=cleaned,
            new_source=source,
            fields=options.fields,
            strategy=options.strategy,
            per_field=options.per_field,
            force=options.force,
        )
        if plan.is_empty:
            return GenerationOutcome(
                ok=True, reason="nothing to change", provider=result.provider, model=result.model
            )
        try:
            revision = revisions.apply_plan(
                asset=asset,
                plan=plan,
                based_on_revision_id=asset.current_revision_id,
                actor=actor,
                job=job,
                provider=result.provider,
                model=result.model,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
            )
        except revisions.StaleRevision:
            continue
        return GenerationOutcome(
            ok=True, revision=revision, provider=result.provider, model=result.model
        )
    return GenerationOutcome(
        ok=False, reason="the image kept changing while its metadata was written"
    )
