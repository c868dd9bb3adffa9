"""Metadata for one image, in the steps a job runner calls: open the image and build the
request (ai_request), one provider call (send_ai_call, safe in a worker thread), and
writing what came back (write_result: clean, lint, plan, then a revision or a proposal).

No knowledge of jobs: the runner holds credits, asks the limiter and owns the retries.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from billing import gate
from mediaopt.library import images
from mediaopt.library.fields import FIELDS, Source
from mediaopt.library.models import MediaAsset
from metadata import checking, proposals, ratelimit, revisions, strategies
from metadata.models import (
    MetadataRevision,
    Proposal,
    ProposalReason,
    RegenerationJob,
    Settings,
    Strategy,
)
from metadata.providers import heuristic
from metadata.providers.base import DescribeRequest, DescribeResult, ErrorKind, ProviderError

logger = logging.getLogger(__name__)

# A concurrent edit between reading the asset and writing the result: re-plan on fresh
# values (no new provider call) this many times before giving up.
STALE_REPLANS = 3


@dataclass(frozen=True)
class GenerationOptions:
    fields: tuple[str, ...] = FIELDS
    strategy: str = Strategy.FILL_EMPTY
    per_field: dict[str, str] = field(default_factory=dict)
    force: bool = False  # also replace fields edited by hand
    work: gate.WorkKind = gate.WorkKind.SINGLE
    language: str = "en"  # a BCP 47 tag
    review: bool = False  # every result waits for a person (a proposal)
    focus_keywords: str = ""

    @classmethod
    def from_settings(
        cls, row: Settings, *, work: gate.WorkKind = gate.WorkKind.SINGLE, **overrides
    ) -> GenerationOptions:
        values = {
            "fields": tuple(name for name in FIELDS if name in row.default_fields),
            "strategy": row.default_strategy,
            "work": work,
            "language": row.language,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True)
class GenerationOutcome:
    ok: bool
    reason: str = ""
    revision: MetadataRevision | None = None
    proposal: Proposal | None = None  # the result waits for a person
    provider: str = ""
    model: str = ""

    @property
    def charged(self) -> bool:
        """Whether the call produced something kept (a revision or a proposal): then
        its credit is spent."""
        return self.revision is not None or self.proposal is not None


def _request(asset: MediaAsset, row: Settings, options: GenerationOptions, preview: bytes | None):
    with asset.file.open("rb") as handle:
        embedded = images.embedded_text(handle)
    context = {
        "title": embedded.title,
        "description": embedded.description,
        "keywords": ", ".join(embedded.keywords),
        # Only so the heuristic can refuse text that merely names the camera.
        "camera": embedded.camera,
    }
    if heuristic.file_name_phrase(heuristic.file_name_words(asset.original_name)):
        context["file_name"] = asset.original_name  # a telling name is worth the model's time
    return DescribeRequest(
        preview_jpeg=preview,
        original_name=asset.original_name,
        fields=options.fields,
        language=options.language or row.language,
        site_context=row.site_context,
        embedded=context,
        focus_keywords=options.focus_keywords,
    )


def ai_request(*, asset: MediaAsset, row: Settings, options: GenerationOptions) -> DescribeRequest:
    """Open the image and build what the model sees. Raises ImageError.

    Separate from the call so a job runner opens images (CPU, database) in its own
    thread and hands threads only the HTTP call.
    """
    with asset.file.open("rb") as handle:
        preview = images.preview(handle)
    return _request(asset, row, options, preview)


@dataclass(frozen=True)
class AICall:
    """What one provider call brought back: a result or an error, and the answer's rate
    headers (for the limiter). Built without touching the database, so a worker thread
    can make the call and hand this to the runner's thread."""

    result: DescribeResult | None = None
    error: ProviderError | None = None
    rate_limit: dict[str, str] = field(default_factory=dict)


def openai_config(*, row: Settings, decision: gate.Decision):
    """How to reach the model for this decision: model and detail from the Settings row,
    base URL and timeout from Django's settings, the key the gate chose (server or BYOK)."""
    from django.conf import settings

    from metadata.providers.openai import DEFAULT_MODEL, OpenAIConfig

    return OpenAIConfig(
        api_key=decision.api_key or "",
        base_url=getattr(settings, "OPENAI_BASE_URL", "") or "",
        model=row.model or DEFAULT_MODEL,
        detail=row.detail or "low",
        timeout=float(getattr(settings, "OPENAI_TIMEOUT", 60.0)),
    )


def rate_limiter(*, row: Settings, decision: gate.Decision) -> ratelimit.Limiter:
    """The shared limiter of the account (key) and model this decision calls."""
    config = openai_config(row=row, decision=decision)
    return ratelimit.limiter_for(
        base_url=config.base_url, api_key=config.api_key, model=config.model
    )


def estimated_tokens(*, request: DescribeRequest, row: Settings) -> int:
    """Tokens the provider counts against its per-minute limit for this call."""
    from metadata.providers import openai as openai_provider

    return openai_provider.estimated_tokens(request=request, detail=row.detail)


def send_ai_call(*, request: DescribeRequest, row: Settings, decision: gate.Decision) -> AICall:
    """One HTTP call to the provider, no limiter, no retries, no database: safe in a
    worker thread. Errors come back in the AICall instead of being raised."""
    from metadata.providers.openai import OpenAIProvider

    try:
        provider = OpenAIProvider(openai_config(row=row, decision=decision))
    except ProviderError as error:
        return AICall(error=error)
    try:
        result = provider.describe(request)
    except ProviderError as error:
        return AICall(error=error, rate_limit=provider.last_rate_limit)
    return AICall(result=result, rate_limit=provider.last_rate_limit)


def report_ai_call(*, limiter: ratelimit.Limiter, call: AICall) -> None:
    """Let the shared limiter learn from an answer: a 429's Retry-After, or headers that
    say no request (or token) is left until a reset, block every worker; the tokens the
    answer reports correct what the next calls are counted for."""
    error, result = call.error, call.result
    limiter.learn(
        headers=call.rate_limit,
        retry_after=error.retry_after if error is not None else None,
        rate_limited=bool(error is not None and error.rate_limited),
        used_tokens=(result.prompt_tokens + result.completion_tokens) if result else 0,
    )


def no_room_error(*, waited: float) -> ProviderError:
    return ProviderError(
        f"The provider's rate limit (shared by every worker) left no room within {waited:g} s.",
        kind=ErrorKind.TRANSIENT,
        retry_after=ratelimit.DEFAULT_BLOCK_SECONDS,
    )


def call_ai_once(
    *,
    request: DescribeRequest,
    row: Settings,
    decision: gate.Decision,
    wait: float | None = None,
    stop: threading.Event | None = None,
) -> DescribeResult:
    """One provider call, no retries. Raises ProviderError.

    The shared rate limiter is asked first (waiting up to ``wait`` seconds, by default
    ``MEDIAOPT_RATE_LIMIT_WAIT_SECONDS``; no room in time is a transient error) and
    learns from the answer. The limiter's database backend touches the database: callers
    that make the HTTP call in a worker thread use admit/send/report separately (jobs.py).
    """
    limiter = rate_limiter(row=row, decision=decision)
    timeout = ratelimit.max_wait_seconds() if wait is None else wait
    if not limiter.acquire(
        tokens=estimated_tokens(request=request, row=row), timeout=timeout, stop=stop
    ):
        raise no_room_error(waited=timeout)
    call = send_ai_call(request=request, row=row, decision=decision)
    report_ai_call(limiter=limiter, call=call)
    if call.error is not None:
        raise call.error
    assert call.result is not None
    return call.result


def describe_with_heuristic(
    *, asset: MediaAsset, row: Settings, options: GenerationOptions
) -> DescribeResult:
    return heuristic.HeuristicProvider().describe(_request(asset, row, options, None))


def write_result(
    *,
    asset: MediaAsset,
    result: DescribeResult,
    source: str,
    options: GenerationOptions,
    actor=None,
    job: RegenerationJob | None = None,
    asset_is_fresh: bool = False,
) -> GenerationOutcome:
    """Check a result, plan it, and write it: a revision, or a proposal when it must wait
    for a person (metadata/checking.py says when). ``asset_is_fresh``: the caller has just
    read the asset in this transaction, so the first plan may skip re-reading it."""
    checked = checking.check(result=result, language=options.language, asset=asset)
    for attempt in range(STALE_REPLANS):
        if attempt or not asset_is_fresh:
            asset.refresh_from_db()
        plan = strategies.plan(
            current_values=asset.values(),
            current_sources=asset.sources(),
            current_is_decorative=asset.is_decorative,
            result=checked.cleaned,
            new_source=source,
            fields=options.fields,
            strategy=options.strategy,
            per_field=options.per_field,
            force=options.force,
        )
        reason = checking.review_reason(
            checked=checked, plan=plan, source=source, review=options.review
        )
        if source == Source.HEURISTIC and not reason:
            plan = checking.without_errors(plan, checked)
        if plan.is_empty:
            return GenerationOutcome(
                ok=True, reason="nothing to change", provider=result.provider, model=result.model
            )
        about = {
            "provider": result.provider,
            "model": result.model,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "language": options.language if source == Source.AI else "",
        }
        if reason:
            proposal = proposals.propose(
                asset=asset,
                plan=plan,
                based_on_revision_id=asset.current_revision_id,
                reason=reason,
                job=job,
                findings=checked.findings.as_json(),
                image_type=checked.image_type,
                **about,
            )
            return GenerationOutcome(
                ok=True,
                reason=f"waiting for review: {ProposalReason(reason).label.lower()}",
                proposal=proposal,
                provider=result.provider,
                model=result.model,
            )
        try:
            revision = revisions.apply_plan(
                asset=asset,
                plan=plan,
                based_on_revision_id=asset.current_revision_id,
                actor=actor,
                job=job,
                findings=checking.findings_for(checked, plan),
                **about,
            )
        except revisions.StaleRevision:
            continue
        return GenerationOutcome(
            ok=True, revision=revision, provider=result.provider, model=result.model
        )
    return GenerationOutcome(
        ok=False, reason="the image kept changing while its metadata was written"
    )
