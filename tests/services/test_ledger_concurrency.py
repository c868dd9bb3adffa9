"""The ledger under real concurrency on PostgreSQL: 32 threads, 32 connections, one account.

Each thread makes 100 hold -> "call" -> capture attempts against 1,000 credits; some
calls "fail" and release their hold instead. The real ledger must capture exactly 1,000,
never let the balance go negative, and release every other hold. The same harness, run
against a deliberately naive check-then-write ledger, must catch it overspending: that is
what proves the harness can see the bug it guards against.

Run with::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt \\
        .venv/bin/pytest -q tests/services/test_ledger_concurrency.py
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing import estimate, ledger
from billing.models import Account, CreditHold, EntryKind, HoldState, LedgerEntry
from tests.conftest import skip_or_fail

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

THREADS = 32
ATTEMPTS = 100
CREDITS = 1_000


def call_fails(thread: int, attempt: int) -> bool:
    # Failures only before attempt 90: after any release, the releasing thread still has
    # attempts left, so the freed credit is always taken again and exactly CREDITS are
    # captured in the end (a release on a thread's last attempt would strand one).
    return attempt < 90 and (thread + attempt) % 4 == 0


@pytest.fixture(autouse=True)
def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        skip_or_fail(
            "the ledger's concurrency is proven on PostgreSQL (SQLite runs one writer "
            "at a time and cannot show a race): run with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt"
        )


class LedgerUnderTest(Protocol):
    def hold(self, *, account_id: int, key: str) -> int: ...  # raises InsufficientCredits
    def capture(self, *, hold_id: int, key: str) -> None: ...
    def release(self, *, hold_id: int) -> None: ...


class RealLedger:
    def hold(self, *, account_id: int, key: str) -> int:
        return ledger.hold(
            account=Account(pk=account_id),
            amount=1,
            idempotency_key=key,
            expires_at=timezone.now() + timedelta(minutes=10),
        ).pk

    def capture(self, *, hold_id: int, key: str) -> None:
        ledger.capture(hold_id=hold_id, capture_key=key)

    def release(self, *, hold_id: int) -> None:
        ledger.release(hold_id=hold_id)


class NaiveLedger:
    """Check, then write what was computed from the read: the classic lost update.

    The short sleep stands for the application's work between the read and the write
    (a real request does more than nothing there); it makes the race show every run.
    """

    def hold(self, *, account_id: int, key: str) -> int:
        account = Account.objects.get(pk=account_id)
        if account.balance - account.held < 1:
            raise ledger.InsufficientCredits("naive: none available")
        time.sleep(0.0005)
        with transaction.atomic():
            try:
                Account.objects.filter(pk=account_id).update(held=account.held + 1)
            except IntegrityError:
                raise ledger.InsufficientCredits("naive: the CHECK refused") from None
            return CreditHold.objects.create(
                account_id=account_id,
                amount=1,
                idempotency_key=key,
                expires_at=timezone.now() + timedelta(minutes=10),
            ).pk

    def capture(self, *, hold_id: int, key: str) -> None:
        hold = CreditHold.objects.get(pk=hold_id)
        account = Account.objects.get(pk=hold.account_id)
        time.sleep(0.0005)
        with transaction.atomic():
            Account.objects.filter(pk=account.pk).update(
                balance=account.balance - 1, held=max(account.held - 1, 0)
            )
            CreditHold.objects.filter(pk=hold_id).update(state=HoldState.CAPTURED)
            LedgerEntry.objects.create(
                account_id=account.pk,
                kind=EntryKind.CAPTURE,
                amount=-1,
                balance_after=account.balance - 1,
                idempotency_key=key,
                hold_id=hold_id,
            )

    def release(self, *, hold_id: int) -> None:
        hold = CreditHold.objects.get(pk=hold_id)
        account = Account.objects.get(pk=hold.account_id)
        with transaction.atomic():
            Account.objects.filter(pk=account.pk).update(held=max(account.held - 1, 0))
            CreditHold.objects.filter(pk=hold_id).update(state=HoldState.RELEASED)


@dataclass
class Outcome:
    pids: set[int] = field(default_factory=set)
    captured: int = 0
    released: int = 0
    refused: int = 0
    min_balance_seen: int | None = None
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def saw_balance(self, value: int) -> None:
        with self.lock:
            if self.min_balance_seen is None or value < self.min_balance_seen:
                self.min_balance_seen = value


def run_harness(impl: LedgerUnderTest, account_id: int) -> Outcome:
    outcome = Outcome()
    barrier = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        captured = released = refused = 0
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            with outcome.lock:
                outcome.pids.add(pid)
            # Every connection is open before anyone starts: 32 live backends at once.
            barrier.wait(timeout=60)
            for attempt in range(ATTEMPTS):
                try:
                    hold_id = impl.hold(account_id=account_id, key=f"hold:{thread}:{attempt}")
                except ledger.InsufficientCredits:
                    refused += 1
                    continue
                if call_fails(thread, attempt):
                    impl.release(hold_id=hold_id)
                    released += 1
                else:
                    impl.capture(hold_id=hold_id, key=f"capture:{thread}:{attempt}")
                    captured += 1
                outcome.saw_balance(
                    Account.objects.filter(pk=account_id).values_list("balance", flat=True).get()
                )
        except Exception as error:  # reported by the test, not lost in a thread
            with outcome.lock:
                outcome.errors.append(f"thread {thread}: {error!r}")
            barrier.abort()
        finally:
            outcome.add(captured=captured, released=released, refused=refused)
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return outcome


@pytest.fixture
def funded() -> Account:
    account = Account.objects.create(name="concurrency", plan="agency")
    ledger.grant(account=account, amount=CREDITS, reason="concurrency test")
    return account


def test_real_ledger_never_overspends_under_32_connections(funded):
    outcome = run_harness(RealLedger(), funded.pk)

    assert outcome.errors == []
    assert len(outcome.pids) == THREADS, "each thread must have its own connection"
    assert outcome.captured == CREDITS
    assert outcome.min_balance_seen is not None and outcome.min_balance_seen >= 0
    funded.refresh_from_db()
    assert (funded.balance, funded.held) == (0, 0)
    captures = LedgerEntry.objects.filter(account=funded, kind=EntryKind.CAPTURE)
    assert captures.count() == CREDITS
    assert captures.aggregate(total=Sum("amount"))["total"] == -CREDITS
    assert estimate.sum_of_entries(funded) == funded.balance
    holds = CreditHold.objects.filter(account=funded)
    assert holds.filter(state=HoldState.CAPTURED).count() == CREDITS
    assert holds.filter(state=HoldState.HELD).count() == 0
    assert holds.filter(state=HoldState.RELEASED).count() == outcome.released
    assert holds.count() == outcome.captured + outcome.released
    assert outcome.captured + outcome.released + outcome.refused == THREADS * ATTEMPTS


def test_the_harness_catches_a_naive_check_then_write_ledger(funded):
    outcome = run_harness(NaiveLedger(), funded.pk)

    assert outcome.errors == []
    assert len(outcome.pids) == THREADS
    funded.refresh_from_db()
    spent_per_balance = CREDITS - funded.balance
    # Overspending: more images charged than credits existed, and a balance that no
    # longer agrees with the captures made.
    assert outcome.captured > CREDITS, (outcome.captured, funded.balance)
    assert outcome.captured != spent_per_balance
