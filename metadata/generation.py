"""Metadata for one asset: preview -> gate -> provider -> clean -> strategy -> revision.

Credits (hold before a paid call, capture on success) arrive with the credits issue; the
gate already decides between AI and the heuristic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings

from billing import gate
from mediaopt import images
from mediaopt.models import MediaAsset
from metadata import revisions, schema, strategies
from metadata.models import MetadataRevision, RegenerationJob, Settings, Strategy
from metadata.providers.base import DescribeRequest, DescribeResult, ProviderError
from metadata.providers.heuristic import HeuristicProvider
from metadata.schema import Source

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
    error: ProviderError | None = None


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


def describe_with_ai(
    *, asset: MediaAsset, row: Settings, options: GenerationOptions, decision: gate.Decision
) -> DescribeResult:
    """One paid description under our retry policy. Raises ImageError or ProviderError."""
    from metadata.providers.openai import OpenAIConfig, OpenAIProvider
    from metadata.providers.retry import call_with_retries

    request = ai_request(asset=asset, row=row, options=options)
    provider = OpenAIProvider(OpenAIConfig.from_settings(row, api_key=decision.api_key))
    return call_with_retries(
        provider,
        request,
        attempts=settings.MEDIAOPT_PROVIDER_ATTEMPTS,
        base_delay=settings.MEDIAOPT_RETRY_BASE_SECONDS,
    )


def describe_with_heuristic(
    *, asset: MediaAsset, row: Settings, options: GenerationOptions
) -> DescribeResult:
    return HeuristicProvider().describe(_request(asset, row, options, None))


def generate(
    *,
    asset: MediaAsset,
    actor=None,
    options: GenerationOptions | None = None,
    job: RegenerationJob | None = None,
) -> GenerationOutcome:
    """Describe one asset and write what the strategy allows. Failures change nothing."""
    row = Settings.objects.current()
    options = options or GenerationOptions.from_settings(row)
    decision = gate.decide(work=options.work)
    if decision.mode == gate.Mode.REFUSED:
        return GenerationOutcome(ok=False, reason=decision.reason)

    try:
        if decision.uses_ai:
            result = describe_with_ai(asset=asset, row=row, options=options, decision=decision)
        else:
            result = describe_with_heuristic(asset=asset, row=row, options=options)
    except images.ImageError as error:
        return GenerationOutcome(ok=False, reason=error.reason)
    except ProviderError as error:
        # DESIGN.md fallback rule (b): uploads may fall back; bulk work never does.
        fallback = options.work in {gate.WorkKind.UPLOAD, gate.WorkKind.IMPORT}
        if not (fallback and row.heuristic_fallback):
            return GenerationOutcome(ok=False, reason=error.reason, error=error)
        logger.warning("AI failed for asset %s (%s); using the heuristic", asset.pk, error.reason)
        result = describe_with_heuristic(asset=asset, row=row, options=options)

    source = Source.HEURISTIC if result.provider == "heuristic" else Source.AI
    return write_result(
        asset=asset, result=result, source=source, options=options, actor=actor, job=job
    )


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
