"""Read-only views of an account's credits: what a scope would cost, a BYOK month's usage,
and what the entries add up to.

Nothing here writes; ``billing.ledger`` is the only writer of credits. An estimate is
advice shown before a job starts, so it reads without locks: a job may still start and
pause when the credits or the month's cap run out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from billing import plans
from billing.ledger import LedgerError, month_start
from billing.models import Account, AccountMode, LedgerEntry, RequestMeter, Unit


@dataclass(frozen=True)
class MonthUsage:
    month: dt.date
    used: int
    held: int
    cap: int | None

    @property
    def remaining(self) -> int | None:
        return None if self.cap is None else max(self.cap - self.used - self.held, 0)


def month_usage(account: Account, *, now: dt.datetime | None = None) -> MonthUsage:
    """A BYOK account's requests this month: used, in flight, and the cap."""
    month = month_start(now)
    row = RequestMeter.objects.filter(account_id=account.pk, month=month).values(
        "used", "held"
    ).first() or {"used": 0, "held": 0}
    cap = (
        Account.objects.filter(pk=account.pk)
        .values_list("byok_monthly_cap_requests", flat=True)
        .get()
    )
    return MonthUsage(month=month, used=row["used"], held=row["held"], cap=cap)


@dataclass(frozen=True)
class Estimate:
    mode: str  # AccountMode
    images: int
    model: str
    # Bundled:
    credits_needed: int = 0
    credits_available: int = 0
    # BYOK:
    requests: int = 0
    approx_usd: Decimal | None = None  # None: no price for this model in the table
    monthly_cap: int | None = None
    cap_remaining: int | None = None

    @property
    def enough(self) -> bool:
        """Whether the whole scope fits; a job may still start and pause when it runs out."""
        if self.mode == AccountMode.BUNDLED:
            return self.credits_available >= self.credits_needed
        return self.cap_remaining is None or self.cap_remaining >= self.requests

    @property
    def summary(self) -> str:
        images = _count(self.images, "image needs", "images need")
        if self.mode == AccountMode.BUNDLED:
            text = (
                f"{images} an AI call: {_count(self.credits_needed, 'credit')}; "
                f"{self.credits_available:,} available."
            )
            if not self.enough:
                text += " The job will pause when credits run out."
            return text
        cost = (
            f"about ${self.approx_usd:,.2f} on your OpenAI account"
            if self.approx_usd is not None
            else f"no price known for {self.model}"
        )
        text = f"{images} an AI call: {_count(self.requests, 'request')}, {cost}."
        if self.cap_remaining is not None:
            text += f" {_count(self.cap_remaining, 'request')} left under this month's cap."
        return text


def _count(n: int, one: str, many: str = "") -> str:
    """ "1 credit", "2,000 credits": the number with its word in the right number."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def estimate(*, account: Account, images_needing_paid_call: int, model: str) -> Estimate:
    """What a scope would cost: credits (bundled), or requests and dollars (BYOK).

    The caller counts the images that need a paid call under its strategy (fill-empty
    skips images with nothing to fill); heuristic results cost nothing.
    """
    if images_needing_paid_call < 0:
        raise LedgerError("The number of images cannot be negative.")
    account.refresh_from_db(fields=["mode", "balance", "held", "byok_monthly_cap_requests"])
    if account.mode == AccountMode.BUNDLED:
        return Estimate(
            mode=AccountMode.BUNDLED,
            images=images_needing_paid_call,
            model=model,
            credits_needed=images_needing_paid_call * plans.CREDITS_PER_IMAGE,
            credits_available=account.available,
        )
    requests = images_needing_paid_call * plans.REQUESTS_PER_IMAGE
    price = plans.price_per_image(model)
    usage = month_usage(account)
    return Estimate(
        mode=AccountMode.BYOK,
        images=images_needing_paid_call,
        model=model,
        requests=requests,
        approx_usd=(price * images_needing_paid_call).quantize(Decimal("0.01"))
        if price is not None
        else None,
        monthly_cap=usage.cap,
        cap_remaining=usage.remaining,
    )


def sum_of_entries(account: Account, *, unit: str = Unit.CREDIT) -> int:
    """What the entries say the balance is; equals ``balance`` for credits (an invariant)."""
    total = LedgerEntry.objects.filter(account_id=account.pk, unit=unit).aggregate(
        total=Sum("amount")
    )["total"]
    return total or 0
