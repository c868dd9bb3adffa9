"""ledger.py one call at a time: what each write does, and the bad input it refuses."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import estimate, ledger
from billing.models import (
    Account,
    CreditHold,
    EntryKind,
    HoldState,
    LedgerEntry,
    RequestMeter,
    Unit,
)

pytestmark = pytest.mark.django_db


def later(seconds: int = 600):
    return timezone.now() + timedelta(seconds=seconds)


def snapshot(account: Account) -> tuple:
    account.refresh_from_db()
    return (
        account.balance,
        account.held,
        LedgerEntry.objects.count(),
        CreditHold.objects.count(),
        list(CreditHold.objects.order_by("pk").values_list("state", flat=True)),
    )


def test_current_account_is_created_once():
    first = Account.objects.current()
    assert Account.objects.current().pk == first.pk
    assert Account.objects.filter(is_installation=True).count() == 1
    assert first.plan == "free" and first.mode == "bundled" and first.balance == 0


def test_grant_adds_credits_and_records_who_and_why(account, django_user_model):
    operator = django_user_model.objects.create_user("operator")
    entry = ledger.grant(account=account, amount=250, reason="invoice 17", actor=operator)
    assert (entry.kind, entry.amount, entry.balance_after) == (EntryKind.GRANT, 250, 250)
    assert (entry.actor, entry.reason) == (operator, "invoice 17")
    assert ledger.balance(account) == ledger.available(account) == 250


def test_grant_replayed_with_its_key_grants_once(account):
    first = ledger.grant(account=account, amount=10, reason="r", idempotency_key="order-1")
    again = ledger.grant(account=account, amount=10, reason="r", idempotency_key="order-1")
    assert again.pk == first.pk
    assert ledger.balance(account) == 10


@pytest.mark.parametrize(
    "amount, reason, message",
    [
        (0, "r", "positive"),
        (-5, "r", "positive"),
        (10_000_000, "r", "maximum"),
        (2.5, "r", "whole number"),
        (True, "r", "whole number"),
        (10, "", "reason is required"),
        (10, "   ", "reason is required"),
        (10, "x" * 501, "longer"),
    ],
)
def test_bad_grant_is_refused_and_writes_nothing(account, amount, reason, message):
    before = snapshot(account)
    with pytest.raises(ledger.LedgerError, match=message):
        ledger.grant(account=account, amount=amount, reason=reason)
    assert snapshot(account) == before


def test_hold_then_capture_spends_once(account):
    ledger.grant(account=account, amount=5, reason="r")
    hold = ledger.hold(
        account=account, amount=1, idempotency_key="hold:7:1", expires_at=later(), item_id=7
    )
    account.refresh_from_db()
    assert (account.balance, account.held, account.available) == (5, 1, 4)
    entry = ledger.capture(hold_key="hold:7:1", capture_key="capture:7")
    account.refresh_from_db()
    assert (account.balance, account.held) == (4, 0)
    assert (entry.kind, entry.amount, entry.balance_after, entry.item_id) == ("capture", -1, 4, 7)
    hold.refresh_from_db()
    assert hold.state == HoldState.CAPTURED
    # A replay (a task delivered twice) returns the same entry and charges nothing.
    assert ledger.capture(hold_id=hold.pk, capture_key="capture:7").pk == entry.pk
    assert ledger.balance(account) == 4


def test_hold_replayed_with_its_key_changes_nothing(account):
    ledger.grant(account=account, amount=5, reason="r")
    first = ledger.hold(account=account, amount=2, idempotency_key="hold:1:1", expires_at=later())
    before = snapshot(account)
    again = ledger.hold(account=account, amount=2, idempotency_key="hold:1:1", expires_at=later())
    assert again.pk == first.pk
    assert snapshot(account) == before


def test_hold_key_reused_for_another_amount_is_an_error(account):
    ledger.grant(account=account, amount=5, reason="r")
    ledger.hold(account=account, amount=2, idempotency_key="hold:1:1", expires_at=later())
    with pytest.raises(ledger.LedgerError, match="already used"):
        ledger.hold(account=account, amount=3, idempotency_key="hold:1:1", expires_at=later())


def test_hold_beyond_available_raises_insufficient_credits_and_writes_nothing(account):
    ledger.grant(account=account, amount=2, reason="r")
    ledger.hold(account=account, amount=2, idempotency_key="a", expires_at=later())
    before = snapshot(account)
    with pytest.raises(ledger.InsufficientCredits, match="0 available"):
        ledger.hold(account=account, amount=1, idempotency_key="b", expires_at=later())
    assert snapshot(account) == before


def test_second_capture_key_for_an_item_charged_earlier_releases_the_new_hold(account):
    ledger.grant(account=account, amount=5, reason="r")
    ledger.hold(account=account, amount=1, idempotency_key="hold:9:1", expires_at=later())
    first = ledger.capture(hold_key="hold:9:1", capture_key="capture:9")
    ledger.hold(account=account, amount=1, idempotency_key="hold:9:2", expires_at=later())
    again = ledger.capture(hold_key="hold:9:2", capture_key="capture:9")
    assert again.pk == first.pk
    assert CreditHold.objects.get(idempotency_key="hold:9:2").state == HoldState.RELEASED
    account.refresh_from_db()
    assert (account.balance, account.held) == (4, 0)


def test_capture_of_unknown_hold_is_an_error_and_writes_nothing(account):
    before = snapshot(account)
    with pytest.raises(ledger.UnknownHold):
        ledger.capture(hold_key="hold:404:1", capture_key="capture:404")
    with pytest.raises(ledger.UnknownHold):
        ledger.capture(hold_id=987654, capture_key="capture:404")
    assert snapshot(account) == before


def test_capture_of_released_hold_is_an_error_and_writes_nothing(account):
    ledger.grant(account=account, amount=5, reason="r")
    hold = ledger.hold(account=account, amount=1, idempotency_key="h", expires_at=later())
    ledger.release(hold_id=hold.pk)
    before = snapshot(account)
    with pytest.raises(ledger.HoldNotHeld, match="released"):
        ledger.capture(hold_id=hold.pk, capture_key="capture:1")
    assert snapshot(account) == before


def test_capture_needs_exactly_one_hold_reference(account):
    with pytest.raises(ledger.LedgerError, match="exactly one"):
        ledger.capture(capture_key="c")
    with pytest.raises(ledger.LedgerError, match="exactly one"):
        ledger.capture(capture_key="c", hold_id=1, hold_key="h")


def test_release_is_idempotent_and_never_undoes_a_capture(account):
    ledger.grant(account=account, amount=5, reason="r")
    hold = ledger.hold(account=account, amount=3, idempotency_key="h", expires_at=later())
    ledger.release(hold_id=hold.pk)
    ledger.release(hold_key="h")
    account.refresh_from_db()
    assert (account.balance, account.held) == (5, 0)
    other = ledger.hold(account=account, amount=1, idempotency_key="h2", expires_at=later())
    ledger.capture(hold_id=other.pk, capture_key="c2")
    assert ledger.release(hold_id=other.pk).state == HoldState.CAPTURED
    account.refresh_from_db()
    assert (account.balance, account.held) == (4, 0)


def test_release_expired_releases_only_expired_holds(account):
    ledger.grant(account=account, amount=5, reason="r")
    ledger.hold(account=account, amount=1, idempotency_key="old", expires_at=later(-1))
    ledger.hold(account=account, amount=1, idempotency_key="new", expires_at=later(600))
    assert ledger.release_expired() == 1
    assert CreditHold.objects.get(idempotency_key="old").state == HoldState.RELEASED
    assert CreditHold.objects.get(idempotency_key="new").state == HoldState.HELD
    assert ledger.release_expired() == 0
    account.refresh_from_db()
    assert account.held == 1


def test_extend_moves_expiry_of_a_held_hold_only(account):
    ledger.grant(account=account, amount=5, reason="r")
    ledger.hold(account=account, amount=1, idempotency_key="h", expires_at=later(-1), item_id=7)
    assert ledger.extend_item_holds(item_ids=[7], expires_at=later(600)) == 1
    assert ledger.release_expired() == 0
    ledger.release(hold_key="h")
    assert ledger.extend_item_holds(item_ids=[7], expires_at=later(600)) == 0


def test_refund_gives_back_a_capture_once(account):
    ledger.grant(account=account, amount=5, reason="r")
    ledger.hold(account=account, amount=1, idempotency_key="h", expires_at=later())
    ledger.capture(hold_key="h", capture_key="capture:1")
    refund = ledger.refund(capture_key="capture:1", reason="bad answer")
    assert (refund.kind, refund.amount, refund.balance_after) == ("refund", 1, 5)
    assert ledger.refund(capture_key="capture:1", reason="again").pk == refund.pk
    assert ledger.balance(account) == 5 == estimate.sum_of_entries(account)
    with pytest.raises(ledger.LedgerError, match="No capture"):
        ledger.refund(capture_key="capture:404", reason="r")
    with pytest.raises(ledger.LedgerError, match="reason"):
        ledger.refund(capture_key="capture:1", reason="")


def test_check_constraint_refuses_held_beyond_balance(account):
    # The database itself refuses, even for a writer that skips the conditional UPDATE.
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(held=1)


# -- BYOK: the same holds count requests against the monthly cap --------------------------


@pytest.fixture
def byok(account) -> Account:
    Account.objects.filter(pk=account.pk).update(mode="byok", byok_monthly_cap_requests=2)
    account.refresh_from_db()
    return account


def test_byok_holds_count_against_the_monthly_cap(byok):
    ledger.hold(account=byok, amount=1, idempotency_key="h1", expires_at=later())
    ledger.hold(account=byok, amount=1, idempotency_key="h2", expires_at=later())
    with pytest.raises(ledger.MonthlyCapReached, match="monthly cap of 2"):
        ledger.hold(account=byok, amount=1, idempotency_key="h3", expires_at=later())
    entry = ledger.capture(hold_key="h1", capture_key="c1")
    assert (entry.unit, entry.amount, entry.balance_after) == (Unit.REQUEST, -1, 1)
    ledger.release(hold_key="h2")
    meter = RequestMeter.objects.get(account=byok)
    assert (meter.used, meter.held) == (1, 0)
    # Credits are untouched by BYOK work.
    byok.refresh_from_db()
    assert (byok.balance, byok.held) == (0, 0)
    ledger.hold(account=byok, amount=1, idempotency_key="h4", expires_at=later())
    with pytest.raises(ledger.MonthlyCapReached):
        ledger.hold(account=byok, amount=1, idempotency_key="h5", expires_at=later())


def test_byok_without_cap_holds_freely(byok):
    Account.objects.filter(pk=byok.pk).update(byok_monthly_cap_requests=None)
    for n in range(5):
        ledger.hold(account=byok, amount=1, idempotency_key=f"h{n}", expires_at=later())
    assert estimate.month_usage(byok).held == 5
    assert estimate.month_usage(byok).remaining is None


# -- estimate ------------------------------------------------------------------------------


def test_estimate_bundled_counts_credits(account):
    ledger.grant(account=account, amount=40, reason="r")
    est = estimate.estimate(account=account, images_needing_paid_call=50, model="gpt-4o-mini")
    assert (est.credits_needed, est.credits_available, est.enough) == (50, 40, False)
    assert est.summary == (
        "50 images need an AI call: 50 credits; 40 available. "
        "The job will pause when credits run out."
    )
    one = estimate.estimate(account=account, images_needing_paid_call=1, model="gpt-4o-mini")
    assert one.summary == "1 image needs an AI call: 1 credit; 40 available."


def test_estimate_byok_counts_requests_and_dollars(byok, settings):
    est = estimate.estimate(account=byok, images_needing_paid_call=1000, model="gpt-4o-mini")
    assert est.requests == 1000
    assert est.approx_usd == Decimal("0.61")  # the token prices of a typical call
    assert (est.monthly_cap, est.cap_remaining, est.enough) == (2, 2, False)
    settings.MEDIAOPT_PRICES = {"my-local-model": 0}
    free = estimate.estimate(account=byok, images_needing_paid_call=10, model="my-local-model")
    assert free.approx_usd == Decimal("0.00")
    unknown = estimate.estimate(account=byok, images_needing_paid_call=10, model="mystery")
    assert unknown.approx_usd is None and "no price" in unknown.summary
    assert est.summary.startswith(
        "1,000 images need an AI call: 1,000 requests, about $0.61 on your OpenAI account. "
        "2 requests left under this month's cap."
    )
