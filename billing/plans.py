"""Plans, their feature flags, and the price table used for BYOK estimates.

| plan   | AI on upload | AI bulk jobs | largest job | models allowed                        |
|--------|--------------|--------------|-------------|---------------------------------------|
| free   | yes          | no           | 1 image     | gpt-4o-mini                           |
| pro    | yes          | yes          | 5,000       | gpt-4o-mini, gpt-4.1-mini, gpt-4.1-nano |
| agency | yes          | yes          | no limit    | any                                   |

Why these values: a free account can try AI where it costs one image at a time (uploads
and single clicks) on the cheapest model; bulk work over a library is the paid feature.
``largest_job`` bounds the images of one Pro bulk job, so a mistaken "select all" cannot
hold a whole month's budget at once. The Agency plan is for whole libraries (a million
images is one "Regenerate all"), so it has no per-job limit: what a job may spend is
bounded by the credits (bundled: the job pauses when they run out) or the BYOK monthly cap
of requests, both shown on the confirmation before it starts.

Prices: per model, from its published price per token and what one call uses (the
image's tokens, the prompt, a short structured answer): 1,000 images cost about $0.61 on
gpt-4o-mini and $0.67 on gpt-4.1-mini. ``usd_for`` turns a call's reported usage into
dollars. ``settings.MEDIAOPT_PRICES`` (a dict of model to dollars per image) overrides.
Bundled work costs one credit per image, whatever the model: a credit is "one image
described by AI".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import models


class Plan(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"
    AGENCY = "agency", "Agency"


@dataclass(frozen=True)
class PlanFeatures:
    ai_on_upload: bool
    ai_bulk_jobs: bool
    largest_job: int | None  # images in one bulk job; None: no limit per job
    models_allowed: frozenset[str] | None  # None: any model

    def allows_job_of(self, images: int) -> bool:
        return self.largest_job is None or images <= self.largest_job

    def allows_model(self, model: str) -> bool:
        return self.models_allowed is None or model in self.models_allowed


PLANS: dict[str, PlanFeatures] = {
    Plan.FREE: PlanFeatures(
        ai_on_upload=True,
        ai_bulk_jobs=False,
        largest_job=1,
        models_allowed=frozenset({"gpt-4o-mini"}),
    ),
    Plan.PRO: PlanFeatures(
        ai_on_upload=True,
        ai_bulk_jobs=True,
        largest_job=5_000,
        models_allowed=frozenset({"gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano"}),
    ),
    Plan.AGENCY: PlanFeatures(
        ai_on_upload=True,
        ai_bulk_jobs=True,
        largest_job=None,
        models_allowed=None,
    ),
}

# One credit pays for one image's AI description (bundled mode); one request is one
# image's call against a BYOK account's monthly cap.
CREDITS_PER_IMAGE = 1
REQUESTS_PER_IMAGE = 1


@dataclass(frozen=True)
class TokenPrice:
    """A model's published price per million tokens, and what a 512-px preview at
    ``detail: low`` costs it in input tokens (gpt-4o-mini bills a low-detail image as 2,833
    tokens; the 4.1 models bill 32-px patches, about 300 to 630 for such a preview)."""

    input_per_million: Decimal
    output_per_million: Decimal
    image_tokens: int


TOKEN_PRICES: dict[str, TokenPrice] = {
    "gpt-4o-mini": TokenPrice(Decimal("0.15"), Decimal("0.60"), 2833),
    "gpt-4.1-nano": TokenPrice(Decimal("0.10"), Decimal("0.40"), 630),
    "gpt-4.1-mini": TokenPrice(Decimal("0.40"), Decimal("1.60"), 415),
    "gpt-4o": TokenPrice(Decimal("2.50"), Decimal("10.00"), 85),
    "gpt-4.1": TokenPrice(Decimal("2.00"), Decimal("8.00"), 85),
}
# A typical call besides the image: the fixed prompt and the image's context in, a short
# structured answer out (measured on the fake server's answers and the real prompt).
PROMPT_TEXT_TOKENS = 650
ANSWER_TOKENS = 150


def usd_for(*, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """What a call's reported usage costs on the provider's bill; None for an unknown model."""
    price = TOKEN_PRICES.get(model)
    if price is None:
        return None
    million = Decimal(1_000_000)
    return (
        Decimal(prompt_tokens) * price.input_per_million
        + Decimal(completion_tokens) * price.output_per_million
    ) / million


def features(plan: str) -> PlanFeatures:
    return PLANS[plan]


def default_plan() -> str:
    """The plan a new installation's account gets: Agency unless the operator says otherwise.

    A self-hosted installation pays OpenAI itself, so a plan that withholds bulk AI would
    only stand between its owner and the key they configured; credits still cap what the
    server's key may spend. Operators who sell mediaopt set MEDIAOPT_DEFAULT_PLAN=free.
    """
    return getattr(settings, "MEDIAOPT_DEFAULT_PLAN", Plan.AGENCY)


def price_per_image(model: str) -> Decimal | None:
    """Approximate dollars per image for ``model`` (``settings.MEDIAOPT_PRICES`` first, then
    the token prices of a typical call), or None when no price is known."""
    override = getattr(settings, "MEDIAOPT_PRICES", {}).get(model)
    if override is not None:
        return Decimal(str(override))
    price = TOKEN_PRICES.get(model)
    if price is None:
        return None
    return usd_for(
        model=model,
        prompt_tokens=price.image_tokens + PROMPT_TEXT_TOKENS,
        completion_tokens=ANSWER_TOKENS,
    )
