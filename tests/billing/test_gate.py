"""The gate's table: every plan, mode and kind of work, and the reasons people read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import crypto, gate, ledger
from billing.gate import Mode, WorkKind
from billing.models import Account

pytestmark = pytest.mark.django_db

AI_B, AI_K, HEUR, REF = Mode.AI_BUNDLED, Mode.AI_BYOK, Mode.HEURISTIC, Mode.REFUSED
UPLOAD, IMPORT, SINGLE, BULK = WorkKind.UPLOAD, WorkKind.IMPORT, WorkKind.SINGLE, WorkKind.BULK

# For the pro and agency plans: what each situation gives for each kind of work.
# Uploads and imports are never refused (the heuristic fills what it can); work a person
# asked AI for is refused with a reason when AI cannot run.
TABLE: dict[str, dict[WorkKind, Mode]] = {
    "bundled, credits": {UPLOAD: AI_B, IMPORT: AI_B, SINGLE: AI_B, BULK: AI_B},
    "bundled, no credits": {UPLOAD: HEUR, IMPORT: HEUR, SINGLE: REF, BULK: REF},
    "bundled, no server key": {UPLOAD: HEUR, IMPORT: HEUR, SINGLE: HEUR, BULK: HEUR},
    "byok, key": {UPLOAD: AI_K, IMPORT: AI_K, SINGLE: AI_K, BULK: AI_K},
    "byok, no key": {UPLOAD: HEUR, IMPORT: HEUR, SINGLE: HEUR, BULK: HEUR},
    "byok, unreadable key": {UPLOAD: HEUR, IMPORT: HEUR, SINGLE: REF, BULK: REF},
    "byok, cap reached": {UPLOAD: HEUR, IMPORT: HEUR, SINGLE: REF, BULK: REF},
}
REASON_WORDS = {
    "bundled, no credits": "out of credits",
    "bundled, no server key": "no openai api key",
    "byok, no key": "no openai key is set",
    "byok, unreadable key": "set the key again",
    "byok, cap reached": "monthly cap",
}


def expected(plan: str, situation: str, work: WorkKind) -> Mode:
    # The free plan has no AI bulk jobs at all: heuristic, whatever the credits or key.
    if plan == "free" and work == BULK:
        return HEUR
    return TABLE[situation][work]


def arrange(situation: str, account: Account, settings) -> None:
    mode = "byok" if situation.startswith("byok") else "bundled"
    Account.objects.filter(pk=account.pk).update(mode=mode)
    settings.OPENAI_API_KEY = "" if situation == "bundled, no server key" else "sk-server-key"
    if situation in {"bundled, credits", "bundled, no server key"}:
        ledger.grant(account=account, amount=5, reason="test")
    if situation.startswith("byok") and situation != "byok, no key":
        crypto.set_api_key(account=account, key="sk-customer-key-1234")
    if situation == "byok, unreadable key":
        Account.objects.filter(pk=account.pk).update(encrypted_api_key="gAAAAA-not-a-token")
    if situation == "byok, cap reached":
        Account.objects.filter(pk=account.pk).update(byok_monthly_cap_requests=1)
        account.refresh_from_db()
        ledger.hold(
            account=account,
            amount=1,
            idempotency_key="hold:cap",
            expires_at=timezone.now() + timedelta(hours=1),
        )
    account.refresh_from_db()


@pytest.mark.parametrize("work", list(WorkKind))
@pytest.mark.parametrize("situation", list(TABLE))
@pytest.mark.parametrize("plan", ["free", "pro", "agency"])
def test_gate_table(plan, situation, work, settings):
    account = Account.objects.current()
    Account.objects.filter(pk=account.pk).update(plan=plan)
    arrange(situation, account, settings)
    decision = gate.decide(work=work, account=account)
    assert decision.mode == expected(plan, situation, work), decision.reason
    assert decision.reason
    assert decision.account_id == account.pk
    if decision.mode == AI_B:
        assert decision.api_key == "sk-server-key"
    elif decision.mode == AI_K:
        assert decision.api_key == "sk-customer-key-1234"
    else:
        assert decision.api_key == ""
    if plan == "free" and work == BULK:
        assert "free plan has no ai bulk jobs" in decision.reason.lower()
    elif situation in REASON_WORDS:
        assert REASON_WORDS[situation] in decision.reason.lower()
    # Without an explicit account, the installation's account is the one decided for.
    assert gate.decide(work=work).mode == decision.mode


def test_free_plan_bulk_reason_names_the_plan(settings):
    account = Account.objects.current()
    decision = gate.decide(work=BULK, images=3, account=account)
    assert decision.mode == HEUR
    assert "Free plan has no AI bulk jobs" in decision.reason


def test_bulk_larger_than_the_plan_allows_is_refused(settings):
    settings.OPENAI_API_KEY = "sk-server-key"
    account = Account.objects.current()
    Account.objects.filter(pk=account.pk).update(plan="pro")
    ledger.grant(account=account, amount=10, reason="test")
    account.refresh_from_db()
    assert gate.decide(work=BULK, images=5_000, account=account).mode == AI_B
    refused = gate.decide(work=BULK, images=5_001, account=account)
    assert refused.mode == REF and "largest job of 5,000" in refused.reason
    Account.objects.filter(pk=account.pk).update(plan="agency")
    account.refresh_from_db()
    assert gate.decide(work=BULK, images=5_001, account=account).mode == AI_B


def test_bulk_bigger_than_the_credits_starts_and_says_it_will_pause(settings):
    settings.OPENAI_API_KEY = "sk-server-key"
    account = Account.objects.current()
    Account.objects.filter(pk=account.pk).update(plan="pro")
    ledger.grant(account=account, amount=3, reason="test")
    account.refresh_from_db()
    decision = gate.decide(work=BULK, images=10, account=account)
    assert decision.mode == AI_B and "pauses when credits run out" in decision.reason


def test_model_outside_the_plan(settings):
    settings.OPENAI_API_KEY = "sk-server-key"
    account = Account.objects.current()
    ledger.grant(account=account, amount=3, reason="test")
    account.refresh_from_db()
    assert gate.decide(work=SINGLE, account=account, model="gpt-4o-mini").mode == AI_B
    refused = gate.decide(work=SINGLE, account=account, model="gpt-4o")
    assert refused.mode == REF and "does not include the model gpt-4o" in refused.reason
    assert gate.decide(work=UPLOAD, account=account, model="gpt-4o").mode == HEUR


@pytest.mark.parametrize("work", list(WorkKind))
def test_without_any_account_the_first_version_rule_holds(work, settings):
    """Before billing is set up (no account row), the server key alone decides."""
    assert gate.decide(work=work).mode == HEUR
    settings.OPENAI_API_KEY = "sk-server-key"
    decision = gate.decide(work=work)
    assert (decision.mode, decision.api_key) == (AI_B, "sk-server-key")
    assert not Account.objects.exists(), "the gate only reads"


def test_decision_repr_hides_the_key():
    decision = gate.Decision(mode=AI_K, reason="r", api_key="sk-secret-in-repr-0000")
    assert "sk-secret" not in repr(decision)


def test_agency_has_no_job_limit_and_a_too_large_refusal_names_its_fix(settings):
    from django.contrib.auth.models import User

    from metadata import status

    settings.OPENAI_API_KEY = "sk-server-key"
    account = Account.objects.current()
    ledger.grant(account=account, amount=10, reason="test")
    Account.objects.filter(pk=account.pk).update(plan="agency")
    account.refresh_from_db()
    assert gate.decide(work=BULK, images=1_000_000, account=account).mode == AI_B
    Account.objects.filter(pk=account.pk).update(plan="pro")
    account.refresh_from_db()
    refused = gate.decide(work=BULK, images=1_000_000, account=account)
    assert refused.cause == gate.Cause.JOB_TOO_LARGE and "Agency plan" in refused.reason
    boss = User.objects.create_superuser("boss", "b@example.invalid", "x")
    step = status.next_step(decision=refused, account=account, user=boss)
    assert step.text == "Choose a plan" and str(account.pk) in step.url
    assert "ask an administrator" in status.next_step(decision=refused, account=account).text
