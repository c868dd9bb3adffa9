"""Plans, their feature flags, and the price table used for BYOK estimates.

| plan   | AI on upload | AI bulk jobs | largest job | models allowed                        |
|--------|--------------|--------------|-------------|---------------------------------------|
| free   | yes          | no           | 1 image     | gpt-4o-mini                           |
| pro    | yes          | yes          | 5,000       | gpt-4o-mini, gpt-4.1-mini, gpt-4.1-nano |
| agency | yes          | yes          | 100,000     | any                                   |

Why these values: a free account can try AI where it costs one image at a time (uploads
and single clicks) on the cheapest model; bulk work over a library is the paid feature.
``largest_job`` bounds the images of one bulk job, so a mistaken "select all" cannot hold
a whole month's budget at once; uploads and single clicks are bounded by credits instead.

Prices: dollars per image for one Chat Completions call with a 512 px preview at
``detail: low`` and a short structured answer (1,000 images cost about $0.59
on gpt-4o-mini, $0.94 on gpt-4.1-mini). ``settings.MEDIAOPT_PRICES`` (a dict of model to
dollars per image) replaces or extends them. Bundled work costs one credit per image,
whatever the model: a credit is "one image described by AI".
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
    largest_job: int  # images in one bulk job
    models_allowed: frozenset[str] | None  # None: any model

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
        largest_job=100_000,
        models_allowed=None,
    ),
}

# One credit pays for one image's AI description (bundled mode); one request is one
# image's call against a BYOK account's monthly cap.
CREDITS_PER_IMAGE = 1
REQUESTS_PER_IMAGE = 1

DEFAULT_PRICES: dict[str, Decimal] = {
    "gpt-4o-mini": Decimal("0.0006"),
    "gpt-4.1-nano": Decimal("0.0003"),
    "gpt-4.1-mini": Decimal("0.00094"),
    "gpt-4o": Decimal("0.0025"),
    "gpt-4.1": Decimal("0.0047"),
}


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
    """Approximate dollars per image for ``model``, or None when the table has no price."""
    table = {**DEFAULT_PRICES, **getattr(settings, "MEDIAOPT_PRICES", {})}
    price = table.get(model)
    return Decimal(str(price)) if price is not None else None
