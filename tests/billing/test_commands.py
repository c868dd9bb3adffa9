"""``manage.py credits``: balance, grant, ledger, rotate-keys."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from billing import crypto, ledger
from billing.models import Account, LedgerEntry

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("credits", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_grant_then_balance_in_text_and_json():
    assert "Granted 500 credits to Default: balance 500." in run(
        "grant", "500", "--reason", "opening balance"
    )
    account = Account.objects.current()
    ledger.hold(
        account=account,
        amount=2,
        idempotency_key="hold:1:1",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert "balance 500, held 2, available 498" in run("balance")
    data = json.loads(run("balance", "--json"))
    assert (data["balance"], data["held"], data["available"]) == (500, 2, 498)
    assert data["plan"] == "free" and data["mode"] == "bundled"


def test_grant_records_the_user_and_replays_once(django_user_model):
    django_user_model.objects.create_user("ops")
    run("grant", "5", "--reason", "r", "--user", "ops", "--idempotency-key", "k1")
    run("grant", "5", "--reason", "r", "--user", "ops", "--idempotency-key", "k1")
    entry = LedgerEntry.objects.get()
    assert entry.actor.username == "ops" and Account.objects.current().balance == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["grant", "0", "--reason", "r"], "positive"),
        (["grant", "-4", "--reason", "r"], "positive"),
        (["grant", "99999999", "--reason", "r"], "maximum"),
        (["grant", "5", "--reason", "  "], "reason is required"),
        (["grant", "5", "--reason", "r", "--user", "nobody"], "No user"),
    ],
)
def test_bad_grant_is_a_command_error_and_writes_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert LedgerEntry.objects.count() == 0


def test_grant_without_reason_is_refused_by_the_parser():
    with pytest.raises(CommandError, match="--reason"):
        run("grant", "5")


def test_ledger_newest_first_in_text_and_json():
    run("grant", "1", "--reason", "first")
    run("grant", "2", "--reason", "second")
    rows = json.loads(run("ledger", "--json"))
    assert [r["reason"] for r in rows] == ["second", "first"]
    assert [r["balance_after"] for r in rows] == [3, 1]
    text = run("ledger").splitlines()
    assert "second" in text[0] and "first" in text[1]


def test_rotate_keys(settings):
    account = Account.objects.current()
    crypto.set_api_key(account=account, key="sk-rotate-me-123456")
    new = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new, *settings.FERNET_KEYS]
    assert "Re-encrypted 1 key(s)" in run("rotate-keys")
    settings.FERNET_KEYS = [new]
    account.refresh_from_db()
    assert crypto.decrypted_key(account) == "sk-rotate-me-123456"
