"""A hypothesis state machine drives the real ledger.py on the test database.

Random sequences of grants, holds, captures, releases, refunds, replays with the same key
and expiries, checked after every step against a plain model and these invariants:
the balance equals the sum of the entries, available credits never go below zero, held
equals the sum of open holds, and every idempotency key is recorded once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db.models import Count, Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from billing import estimate, ledger
from billing.models import Account, CreditHold, HoldState, LedgerEntry


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        # Examples share one test database: each gets its own account and key prefix.
        self.tag = uuid.uuid4().hex[:10]
        self.account = Account.objects.create(name=f"machine {self.tag}")
        self.balance = 0
        self.model_holds: dict[str, dict] = {}  # hold key -> amount, state, expired
        self.entries = 0
        self.refunded: set[str] = set()
        self.counter = 0

    def _next(self, kind: str) -> str:
        self.counter += 1
        return f"{self.tag}:{kind}:{self.counter}"

    def _held(self) -> int:
        return sum(h["amount"] for h in self.model_holds.values() if h["state"] == HoldState.HELD)

    # -- rules ---------------------------------------------------------------------------

    @rule(amount=st.integers(min_value=1, max_value=30))
    def grant(self, amount: int) -> None:
        entry = ledger.grant(account=self.account, amount=amount, reason="machine")
        self.balance += amount
        self.entries += 1
        assert entry.balance_after == self.balance

    @rule(amount=st.integers(min_value=-3, max_value=0))
    def bad_grant(self, amount: int) -> None:
        try:
            ledger.grant(account=self.account, amount=amount, reason="machine")
        except ledger.LedgerError:
            return
        raise AssertionError("a non-positive grant was accepted")

    @rule(
        target=holds,
        amount=st.integers(min_value=1, max_value=12),
        expired=st.booleans(),
    )
    def hold(self, amount: int, expired: bool) -> str:
        key = self._next("hold")
        expires_at = timezone.now() + timedelta(seconds=-60 if expired else 3600)
        fits = self.balance - self._held() >= amount
        try:
            ledger.hold(
                account=self.account, amount=amount, idempotency_key=key, expires_at=expires_at
            )
        except ledger.InsufficientCredits:
            assert not fits, "refused a hold that fitted"
            return key
        assert fits, "accepted a hold beyond the available credits"
        self.model_holds[key] = {"amount": amount, "state": HoldState.HELD, "expired": expired}
        return key

    @rule(key=holds)
    def replay_hold(self, key: str) -> None:
        if key not in self.model_holds:
            return
        amount = self.model_holds[key]["amount"]
        again = ledger.hold(
            account=self.account,
            amount=amount,
            idempotency_key=key,
            expires_at=timezone.now() + timedelta(hours=1),
        )
        assert again.state == self.model_holds[key]["state"]

    @rule(key=holds)
    def capture(self, key: str) -> None:
        """Captures and replays of a capture: the capture key is fixed per hold."""
        capture_key = f"{key}:capture"
        held = self.model_holds.get(key)
        try:
            entry = ledger.capture(hold_key=key, capture_key=capture_key)
        except ledger.UnknownHold:
            assert held is None
            return
        except ledger.HoldNotHeld:
            assert held is not None and held["state"] == HoldState.RELEASED
            return
        assert held is not None and held["state"] != HoldState.RELEASED
        if held["state"] == HoldState.HELD:
            held["state"] = HoldState.CAPTURED
            self.balance -= held["amount"]
            self.entries += 1
        assert entry.amount == -held["amount"]

    @rule(key=holds)
    def release(self, key: str) -> None:
        held = self.model_holds.get(key)
        try:
            ledger.release(hold_key=key)
        except ledger.UnknownHold:
            assert held is None
            return
        if held["state"] == HoldState.HELD:
            held["state"] = HoldState.RELEASED

    @rule(key=consumes(holds))
    def refund(self, key: str) -> None:
        held = self.model_holds.get(key)
        capture_key = f"{key}:capture"
        if held is None or held["state"] != HoldState.CAPTURED:
            try:
                ledger.refund(capture_key=capture_key, reason="machine")
            except ledger.LedgerError:
                return
            raise AssertionError("refunded a capture that never happened")
        ledger.refund(capture_key=capture_key, reason="machine")
        ledger.refund(capture_key=capture_key, reason="machine replay")
        if key not in self.refunded:
            self.refunded.add(key)
            self.balance += held["amount"]
            self.entries += 1

    @rule()
    def expire(self) -> None:
        ledger.release_expired()
        for held in self.model_holds.values():
            if held["expired"] and held["state"] == HoldState.HELD:
                held["state"] = HoldState.RELEASED

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def balance_is_the_sum_of_entries(self) -> None:
        self.account.refresh_from_db()
        assert self.account.balance == estimate.sum_of_entries(self.account) == self.balance

    @invariant()
    def available_never_below_zero(self) -> None:
        self.account.refresh_from_db()
        assert self.account.available >= 0
        assert self.account.held >= 0

    @invariant()
    def held_is_the_sum_of_open_holds(self) -> None:
        open_holds = CreditHold.objects.filter(account=self.account, state=HoldState.HELD)
        total = open_holds.aggregate(total=Sum("amount"))["total"] or 0
        self.account.refresh_from_db()
        assert self.account.held == total == self._held()

    @invariant()
    def each_key_recorded_once(self) -> None:
        entries = LedgerEntry.objects.filter(account=self.account)
        assert entries.count() == self.entries
        assert not entries.values("idempotency_key").annotate(n=Count("id")).filter(n__gt=1)
        holds = CreditHold.objects.filter(account=self.account)
        assert holds.count() == len(self.model_holds)


@pytest.mark.django_db
def test_ledger_state_machine():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
